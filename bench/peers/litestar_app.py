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

import datetime as dt
import os
import time
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

QUERY = """
SELECT id, sku, name, description, category, price_minor, currency, stock, created_at, updated_at
FROM products WHERE id = $1 AND deleted_at IS NULL
"""


class Price(msgspec.Struct):
    amount_minor: int
    currency: str


class ProductView(msgspec.Struct):
    id: int
    sku: str
    name: str
    description: str
    category: str
    price: Price
    stock: int
    in_stock: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class Caller(msgspec.Struct):
    id: int


_encode = msgspec.json.Encoder().encode


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


def create_app(
    database_url: str, secret: str, *, pool_size: int = 10, cache_seconds: float = 0.0
) -> Litestar:
    pools: list[asyncpg.Pool] = []
    cache: dict[int, tuple[float, bytes]] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        pools.append(
            await asyncpg.create_pool(
                database_url, min_size=pool_size, max_size=pool_size, reset=_no_reset
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

    async def load(product_id: int) -> bytes:
        row = await pools[0].fetchrow(QUERY, product_id)
        if row is None:
            raise NotFoundException()
        view = ProductView(
            id=row["id"],
            sku=row["sku"],
            name=row["name"],
            description=row["description"],
            category=row["category"],
            price=Price(row["price_minor"], row["currency"]),
            stock=row["stock"],
            in_stock=row["stock"] > 0,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        return _encode(view)

    @get("/v1/products/{product_id:int}")
    async def read_product(product_id: FromPath[int]) -> Response[bytes]:
        if cache_seconds > 0:
            now = time.monotonic()
            hit = cache.get(product_id)
            if hit is None or hit[0] < now:
                hit = cache[product_id] = (now + cache_seconds, await load(product_id))
            body = hit[1]
        else:
            body = await load(product_id)
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
