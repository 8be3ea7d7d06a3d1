"""Ceiling 2: a raw ASGI callable doing what ``GET /v1/products/{id}`` must do at the least.

One primary-key lookup (the very ``get_product`` statement) on the cheapest pool
(``bench/ceilings/database.py``), orjson of the row in hotpath's shape: no routing, auth,
metrics or headers. ``CEILING_DATABASE_URL`` names the database.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.ceilings.database import JSON, Ceiling, answer, lifespan
from bench.ceilings.products import OPTIONS, product

_ceiling = Ceiling()
_QUERY = _ceiling.queries.sql("get_product")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(_ceiling, receive, send)
        return
    tail = scope["path"].rpartition("/")[2]
    row = None
    if tail.isdigit():
        async with _ceiling.connection() as conn:
            row = await conn.fetchrow(_QUERY, int(tail))
    if row is None:
        await answer(send, 404, b'{"status":404}', JSON)
        return
    await answer(send, 200, orjson.dumps(product(row), option=OPTIONS), JSON)
