"""The peers' phase: the same authenticated read on the FastAPI template, Litestar and
BlackSheep (bench/peers/), warm and uncached, each on a server of its own."""

from __future__ import annotations

import secrets

from bench.peers.common import JWT_AUDIENCE
from bench.suite import setup
from bench.suite.servers import Server, asgi_command
from bench.suite.state import Run

PEERS = (
    ("peer_product_get", "bench.peers.fastapi_template:app",
     "FastAPI + SQLAlchemy async ORM + pydantic, user loaded per request", 0, False,
     "product_get_nocache"),
    ("peer_litestar_get", "bench.peers.litestar_app:app_from_env()",
     "Litestar, its JWT auth, msgspec, asyncpg (no-op reset), products cached 5 s", 5, False,
     "product_get"),
    ("peer_litestar_get_nocache", "bench.peers.litestar_app:app_from_env()",
     "the same, no cache: PostgreSQL", 0, False, "product_get_nocache"),
    ("peer_blacksheep_get", "bench.peers.blacksheep_app:app_from_env()",
     "BlackSheep, its JWT bearer auth, msgspec, asyncpg (no-op reset), cached 5 s", 5, True,
     "product_get"),
    ("peer_blacksheep_get_nocache", "bench.peers.blacksheep_app:app_from_env()",
     "the same, no cache: PostgreSQL", 0, True, "product_get_nocache"),
)  # fmt: skip


def measure_peers(state: Run, url: str, accounts: list[setup.Account]) -> None:
    """The same authenticated read on the peers, each on a server of its own: warm ones
    (cached) against hotpath's warm read, uncached ones against hotpath's uncached read."""
    secret = secrets.token_urlsafe(32)
    plain = state.file("tokens-peer.txt", setup.peer_tokens(accounts, secret))
    audience = state.file(
        "tokens-peer-aud.txt", setup.peer_tokens(accounts, secret, audience=JWT_AUDIENCE)
    )
    for name, target, description, cache, with_audience, _ in PEERS:
        products = state.options.hot_products if cache else state.options.products
        load = {
            "BENCH_PRODUCTS": str(products),
            "BENCH_TOKENS": audience if with_audience else plain,
        }

        ceiling = "ceiling_json" if cache else "ceiling_pk"

        def read(
            server: Server,
            name: str = name,
            load: dict[str, str] = load,
            about: str = description,
            ceiling: str = ceiling,
        ) -> None:
            state.measure(server, name, "product_get.lua", load, ceiling=ceiling, description=about)

        env = {
            "PEER_DATABASE_URL": url,
            "PEER_JWT_SECRET": secret,
            "PEER_JWT_AUDIENCE": JWT_AUDIENCE,
            "PEER_CACHE_SECONDS": str(cache),
            "PEER_POOL_SIZE": str(state.options.pool_size),
        }
        state.serve(name, asgi_command(target), env, "/livez", read)
