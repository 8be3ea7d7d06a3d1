"""What the Litestar and BlackSheep peers share, written as a user of either would: the read's
query, its msgspec response type, the JWT audience, the no-op pool reset, and the in-process
answer cache of their warm variants (hotpath's warm read serves from process memory too)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

QUERY = """
SELECT id, sku, name, description, category, price_minor, currency, stock, created_at, updated_at
FROM products WHERE id = $1 AND deleted_at IS NULL
"""
# The audience and issuer BlackSheep's JWT auth requires; the suite signs the peers' tokens for it.
JWT_AUDIENCE = "bench"


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


_encode = msgspec.json.Encoder().encode


async def no_reset(conn: asyncpg.Connection) -> None:
    """asyncpg's default reset is a round trip on every release; these apps keep no session
    state on a connection, so there is nothing to reset."""
    return


async def product_json(pool: asyncpg.Pool, product_id: int) -> bytes | None:
    row: Any = await pool.fetchrow(QUERY, product_id)
    if row is None:
        return None
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


class AnswerCache:
    """Each product's encoded answer for ``seconds`` (0: no cache, every read loads)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._answers: dict[int, tuple[float, bytes]] = {}

    async def get(
        self, product_id: int, load: Callable[[int], Awaitable[bytes | None]]
    ) -> bytes | None:
        if self.seconds <= 0:
            return await load(product_id)
        now = time.monotonic()
        hit = self._answers.get(product_id)
        if hit is not None and hit[0] >= now:
            return hit[1]
        body = await load(product_id)
        if body is not None:
            self._answers[product_id] = (now + self.seconds, body)
        return body
