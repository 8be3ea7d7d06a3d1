"""Ceiling 2: a raw ASGI callable doing what ``GET /v1/products/{id}`` must do at the least.

One primary-key lookup through a plain asyncpg pool (its default reset on release included),
orjson of the row, no routing, auth, metrics or headers. ``CEILING_DATABASE_URL`` names the
database; the pool is made in the lifespan.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import orjson

_QUERY = """
SELECT id, sku, name, description, category, price_minor, currency, stock, version,
       created_at, updated_at
FROM products WHERE id = $1 AND deleted_at IS NULL
"""
_JSON = [(b"content-type", b"application/json")]
_NOT_FOUND = {"type": "http.response.start", "status": 404, "headers": _JSON}
_pool: asyncpg.Pool | None = None


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _pool = await asyncpg.create_pool(
                os.environ["CEILING_DATABASE_URL"], min_size=10, max_size=10
            )
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert _pool is not None
    tail = scope["path"].rpartition("/")[2]
    row = await _pool.fetchrow(_QUERY, int(tail)) if tail.isdigit() else None
    if row is None:
        await send(_NOT_FOUND)
        await send({"type": "http.response.body", "body": b'{"status":404}'})
        return
    body = orjson.dumps(
        {
            "id": row["id"],
            "sku": row["sku"],
            "name": row["name"],
            "description": row["description"],
            "category": row["category"],
            "price": {"amount_minor": row["price_minor"], "currency": row["currency"]},
            "stock": row["stock"],
            "version": row["version"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
