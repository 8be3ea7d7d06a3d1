"""A strong peer: ``GET /v1/products/{id}`` on Litestar, tuned as its docs recommend and then
some.

Litestar with its own JWT auth (``JWTAuth``, HS256, the user taken from the token's claims
instead of a query per request), msgspec for the response (Litestar's native serializer),
asyncpg's pool with a no-op ``reset=`` (asyncpg's default reset is a round trip per release),
no logging middleware, served by the same granian command as hotpath with its access log off.
``PEER_CACHE_SECONDS`` > 0 keeps each product's encoded answer in process for that long, as
hotpath's warm read does; 0 reads PostgreSQL every time.

Configuration: ``PEER_DATABASE_URL``, ``PEER_JWT_SECRET``, ``PEER_POOL_SIZE`` (10),
``PEER_CACHE_SECONDS`` (0). Serve with ``granian --interface asgi
bench.peers.litestar_app:app``; tests call ``create_app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.security.jwt import JWTAuth, Token

from bench.peers.common import AnswerCache, no_reset, product_json


class Caller(msgspec.Struct):
    id: int


def create_app(
    database_url: str, secret: str, *, pool_size: int = 10, cache_seconds: float = 0.0
) -> Litestar:
    pools: list[asyncpg.Pool] = []
    cache = AnswerCache(cache_seconds)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        pools.append(
            await asyncpg.create_pool(
                database_url, min_size=pool_size, max_size=pool_size, reset=no_reset
            )
        )
        try:
            yield
        finally:
            await pools.pop().close()

    async def retrieve_user(token: Token, _: ASGIConnection[Any, Any, Any, Any]) -> Caller:
        return Caller(int(token.sub))

    auth = JWTAuth[Caller](
        token_secret=secret,
        retrieve_user_handler=retrieve_user,
        exclude=["/livez"],
    )

    async def load(product_id: int) -> bytes | None:
        return await product_json(pools[0], product_id)

    @get("/v1/products/{product_id:int}")
    async def read_product(product_id: FromPath[int]) -> Response[bytes]:
        body = await cache.get(product_id, load)
        if body is None:
            raise NotFoundException()
        return Response(body, media_type="application/json")

    @get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(
        route_handlers=[read_product, livez],
        on_app_init=[auth.on_app_init],
        lifespan=[lifespan],
        openapi_config=None,
        debug=False,
    )


def app_from_env() -> Litestar:
    return create_app(
        os.environ["PEER_DATABASE_URL"],
        os.environ["PEER_JWT_SECRET"],
        pool_size=int(os.environ.get("PEER_POOL_SIZE", "10")),
        cache_seconds=float(os.environ.get("PEER_CACHE_SECONDS", "0")),
    )
