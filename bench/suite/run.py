"""One benchmark run, phase by phase, each scenario measured after a warm-up on a freshly
started server: the ceilings (bench/suite/ceilings.py); hotpath's scenarios, here, with its
uncached and unlimited variants, the open-model run of the warm read beside the box's floors
(open_model.py), Artillery and the profiles; the peers (peers.py); the budget's interleaved
rounds (budget.py); webhook delivery."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.suite import setup, webhooks
from bench.suite.budget import measure_budgets
from bench.suite.ceilings import measure_ceilings
from bench.suite.open_model import measure_open_model
from bench.suite.peers import measure_peers
from bench.suite.servers import Server, hotpath_command
from bench.suite.state import Options, Results, Run, hotpath_env


def run_suite(options: Options) -> Results:
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-bench-"))
    with setup.bench_database() as url:
        accounts = setup.prepare_database(url, products=options.products, accounts=options.accounts)
        state = Run(options, workdir)
        measure_ceilings(state, url, accounts)
        _hotpath(state, url, accounts)
        measure_peers(state, url, accounts)
        measure_budgets(state, url, accounts)
        if options.webhook_events:
            state.results.webhooks = webhooks.measure(
                url, events=options.webhook_events, log=state.log
            )
        return state.results


def _hotpath(state: Run, url: str, accounts: list[setup.Account]) -> None:
    options = state.options
    env = hotpath_env(state, url)

    def cached(server: Server) -> None:
        tokens = state.file("tokens.txt", setup.log_in(server.base, accounts))
        keys = state.file("keys.txt", setup.issue_api_keys(server.base, _read(tokens)))
        first, deep = setup.list_paths(server.base, deep_pages=options.deep_pages)
        hot = {"BENCH_PRODUCTS": str(options.hot_products)}
        logins = state.file("logins.txt", [f"{a.email}\t{a.password}" for a in accounts])
        bought = options.order_products()  # none of the warm read's: its cache stays warm
        json, pk = "ceiling_json", "ceiling_pk"
        # (name, script, environment, ceiling, description, connections if not the default)
        scenarios: list[tuple[str, str, dict[str, str], str | None, str, int | None]] = [
            ("ping", "ping.lua", {}, json, "GET /livez: routing, middleware", None),
            ("product_get", "product_get.lua", {**hot, "BENCH_TOKENS": tokens}, json,
             "GET /v1/products/{id}, JWT, warm cache", None),
            ("product_get_apikey", "product_get.lua", {**hot, "BENCH_TOKENS": keys}, json,
             "the same read with an hp_ API key", None),
            ("product_list_first", "paths.lua",
             {"BENCH_PATHS": state.file("first.txt", [first])}, "ceiling_list_first",
             "GET /v1/products?limit=50, first page", None),
            ("product_list_deep", "paths.lua", {"BENCH_PATHS": state.file("deep.txt", [deep])},
             "ceiling_list_deep", f"the page {options.deep_pages} cursors in", None),
            ("order_place", "order_place.lua", {**bought, "BENCH_TOKENS": tokens},
             "ceiling_order", "POST /v1/orders, a fresh Idempotency-Key each", None),
            # Few connections: past 20 logins in flight from one address, the login throttle
            # answers 429 by design; 4 already keep the one argon2 slot of a 2-core box busy.
            ("login", "login.lua", {"BENCH_LOGINS": logins}, None,
             "POST /v1/auth/login, argon2id at the production cost, 4 connections", 4),
            ("mixed", "mixed.lua", {**hot, "BENCH_TOKENS": tokens}, pk,
             "80% product by id, 10% list page, 10% orders", None),
        ]  # fmt: skip
        for name, script, environment, ceiling, description, connections in scenarios:
            state.measure(
                server,
                name,
                script,
                environment,
                ceiling=ceiling,
                description=description,
                connections=connections,
                # A login is an argon2 hash of about a second: a window of one second (smoke
                # mode) on a busy box can end before the first answer, and wrk counts none.
                at_least=options.login_seconds if name == "login" else 0.0,
            )
        measure_open_model(state, server, url, tokens)
        if options.artillery:
            _artillery(state, server, accounts)

    def one_read(
        name: str, products: int, ceiling: str, description: str
    ) -> Callable[[Server], None]:
        """A server of its own for one variant of product_get."""

        def body(server: Server) -> None:
            tokens = state.file(f"tokens-{name}.txt", setup.log_in(server.base, accounts))
            environment = {"BENCH_PRODUCTS": str(products), "BENCH_TOKENS": tokens}
            state.measure(
                server,
                name,
                "product_get.lua",
                environment,
                ceiling=ceiling,
                description=description,
            )

        return body

    uncached = one_read(
        "product_get_nocache",
        options.products,
        "ceiling_pk",
        "the same read, product cache off: PostgreSQL",
    )
    unlimited = one_read(
        "product_get_nolimit",
        options.hot_products,
        "ceiling_json",
        "product_get with the rate limiter off: what the limiter costs",
    )

    state.serve("hotpath", hotpath_command(), env, "/readyz", cached)
    nocache = {**env, "HOTPATH_PRODUCT_CACHE_SECONDS": "0"}
    state.serve("hotpath_nocache", hotpath_command(), nocache, "/readyz", uncached)
    nolimit = {**env, "HOTPATH_RATE_LIMITS": "false"}
    state.serve("hotpath_nolimit", hotpath_command(), nolimit, "/readyz", unlimited)


def _artillery(state: Run, server: Server, accounts: list[setup.Account]) -> None:
    from bench.suite import artillery

    if not artillery.artillery_available():
        state.results.artillery_skipped = "node and npm are not on PATH"
        return
    state.results.artillery = artillery.run_artillery(
        server.base,
        [(a.email, a.password) for a in accounts],
        state.options.products,
        arrival_rate=state.options.artillery_rate,
        duration=state.options.artillery_seconds,
        workdir=state.workdir,
    )


def _read(path: str) -> list[str]:
    return Path(path).read_text().split()
