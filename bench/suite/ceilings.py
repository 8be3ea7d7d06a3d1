"""The ceilings' phase: each endpoint class's floor (bench/ceilings/) started as granian serves
hotpath and sent what its hotpath scenario sends."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from bench.suite import setup
from bench.suite.servers import Server, asgi_command
from bench.suite.state import Run, hotpath_env


def measure_ceilings(state: Run, url: str, accounts: list[setup.Account]) -> None:
    """Each endpoint class's floor (bench/ceilings/), measured once for the table; the
    budget's rounds measure them again beside hotpath."""
    for name, load in ceiling_loads(state, url, accounts).items():
        start = CEILINGS[name]

        def body(server: Server, name: str = name, load: CeilingLoad = load) -> None:
            description = CEILINGS[name].description
            state.measure(
                server, name, load.script, load.env(server), ceiling=None, description=description
            )

        state.serve(name, asgi_command(start.target), start.env(url, state), start.ready, body)


@dataclass(frozen=True)
class CeilingStart:
    target: str
    description: str
    ready: str
    pool: str | None = None  # CEILING_POOL: None for ceilings without a database
    # The edge ceilings of the reads and the order read hotpath's settings, as hotpath does.
    hotpath: tuple[tuple[str, str], ...] | None = None

    def env(self, url: str, state: Run) -> dict[str, str]:
        if self.pool is None:
            return {}
        settings = {} if self.hotpath is None else {**hotpath_env(state, url), **dict(self.hotpath)}
        return {
            **settings,
            "CEILING_DATABASE_URL": url,
            "CEILING_POOL": self.pool,
            "CEILING_POOL_SIZE": str(state.options.pool_size),
            "HOTPATH_SECRET_KEY": state.secret,
        }


@dataclass(frozen=True)
class CeilingLoad:
    script: str
    env: Callable[[Server], dict[str, str]]


CEILINGS = {
    "ceiling_json": CeilingStart(
        "bench.ceilings.fixed_json:app", "bare ASGI callable on granian, fixed JSON", "/"
    ),
    "ceiling_json_edge": CeilingStart(
        "bench.ceilings.fixed_json_edge:app",
        "the same plus the stack's jobs for /livez fused into it (ids, log, metrics, headers)",
        "/",
    ),
    "ceiling_pk": CeilingStart(
        "bench.ceilings.pk_lookup:app",
        "bare ASGI, primary-key lookup + orjson, hotpath's pool",
        "/v1/products/1",
        "hotpath",
    ),
    "ceiling_pk_asyncpg": CeilingStart(
        "bench.ceilings.pk_lookup:app",
        "the same on asyncpg's pool with a no-op reset",
        "/v1/products/1",
        "asyncpg",
    ),
    "ceiling_pk_asyncpg_default": CeilingStart(
        "bench.ceilings.pk_lookup:app",
        "the same on asyncpg's pool as it comes, its reset on every release (the pre-issue-19 "
        "yardstick)",
        "/v1/products/1",
        "asyncpg-default",
    ),
    "ceiling_get_edge": CeilingStart(
        "bench.ceilings.product_edge:app",
        "the warm authenticated read's jobs fused into one callable (the edge's, token, "
        "limiter, product cache)",
        "/",
        "hotpath",
        hotpath=(),
    ),
    "ceiling_get_nocache_edge": CeilingStart(
        "bench.ceilings.product_edge:app",
        "the same with the product cache off: its miss is ceiling_pk's lookup",
        "/",
        "hotpath",
        hotpath=(("HOTPATH_PRODUCT_CACHE_SECONDS", "0"),),
    ),
    "ceiling_list_first": CeilingStart(
        "bench.ceilings.list_page:app",
        "bare ASGI, the first list page's query, cursor and encoding",
        "/v1/products?limit=1",
        "hotpath",
    ),
    "ceiling_list_deep": CeilingStart(
        "bench.ceilings.list_page:app",
        "the same, the deep page behind a cursor",
        "/v1/products?limit=1",
        "hotpath",
    ),
    "ceiling_list_edge": CeilingStart(
        "bench.ceilings.list_edge:app",
        "the list's jobs fused around ceiling_list's page (the edge's, limiter, query validation)",
        "/v1/products?limit=1",
        "hotpath",
        hotpath=(),
    ),
    "ceiling_order": CeilingStart(
        "bench.ceilings.order_place:app",
        "bare ASGI, the order transaction's statements in one transaction",
        "/",
        "hotpath",
    ),
    "ceiling_order_edge": CeilingStart(
        "bench.ceilings.order_edge:app",
        "the order's jobs fused around ceiling_order's transaction (the edge's, token, "
        "limiter, body validation, cache invalidation)",
        "/",
        "hotpath",
        hotpath=(),
    ),
}


def ceiling_loads(state: Run, url: str, accounts: list[setup.Account]) -> dict[str, CeilingLoad]:
    """What each ceiling is sent: what its hotpath scenario sends."""
    options = state.options
    everything = {"BENCH_PRODUCTS": str(options.products)}
    anyone = {**everything, "BENCH_TOKENS": state.file("no-tokens.txt", ["none"])}
    buyers = {
        **options.order_products(),
        "BENCH_TOKENS": state.file("ceiling-tokens.txt", buyer_tokens(accounts)),
    }

    def list_page(deep: bool) -> Callable[[Server], dict[str, str]]:
        def env(server: Server) -> dict[str, str]:
            first, deep_path = setup.list_paths(server.base, deep_pages=options.deep_pages)
            name = "deep" if deep else "first"
            return {
                "BENCH_PATHS": state.file(f"ceiling-{name}.txt", [deep_path if deep else first])
            }

        return env

    return {
        "ceiling_json": CeilingLoad("ping.lua", lambda _: {}),
        "ceiling_json_edge": CeilingLoad("ping.lua", lambda _: {}),
        "ceiling_pk": CeilingLoad("product_get.lua", lambda _: anyone),
        "ceiling_pk_asyncpg": CeilingLoad("product_get.lua", lambda _: anyone),
        "ceiling_pk_asyncpg_default": CeilingLoad("product_get.lua", lambda _: anyone),
        "ceiling_list_first": CeilingLoad("paths.lua", list_page(deep=False)),
        "ceiling_list_deep": CeilingLoad("paths.lua", list_page(deep=True)),
        "ceiling_order": CeilingLoad("order_place.lua", lambda _: buyers),
    }


def buyer_tokens(accounts: list[setup.Account]) -> list[str]:
    """Bearer tokens the order ceiling reads the buyer from (it checks no signature)."""
    return [
        "ceiling." + base64.urlsafe_b64encode(orjson.dumps({"sub": str(a.id)})).decode() + ".x"
        for a in accounts
    ]
