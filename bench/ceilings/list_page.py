"""Ceiling 3: what ``GET /v1/products?limit=N[&cursor=C]`` (the default listing, oldest
first by created_at) must do at the least.

Verify the signed cursor (hotpath's own codec and key, ``HOTPATH_SECRET_KEY``: a cursor from
hotpath works here), run the very ``list_products_by_created_asc`` statement for ``limit + 1``
rows on the cheapest pool, encode the page in hotpath's shape with the next cursor and its
``Link`` header. No routing, auth, query validation beyond ``limit``, metrics or middleware.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from bench.ceilings.database import JSON, Ceiling, answer, lifespan
from bench.ceilings.products import OPTIONS, product
from server.web.pagination import CursorCodec

_ceiling = Ceiling()
_QUERY = _ceiling.queries.sql("list_products_by_created_asc")
# The listing's cursor scope for the default sort and no filters, as hotpath names it.
_SCOPE = "products:" + orjson.dumps(["created_at", "asc", *[None] * 3, False, None, None]).decode()
_cursors = CursorCodec(os.environ.get("HOTPATH_SECRET_KEY", ""))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(_ceiling, receive, send)
        return
    params = dict(parse_qsl(scope["query_string"].decode()))
    limit = int(params.get("limit", "20"))
    after: tuple[Any, Any] = (None, None)
    if "cursor" in params:
        stamp, last_id = _cursors.decode_values(_SCOPE, params["cursor"])
        after = (dt.datetime.fromisoformat(stamp), last_id)
    host = dict(scope["headers"]).get(b"host", b"").decode()
    body, headers = await page(_ceiling, params, limit, after, f"http://{host}{scope['path']}")
    await answer(send, 200, body, headers)


async def page(
    ceiling: Ceiling, params: dict[str, str], limit: int, after: tuple[Any, Any], url: str
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The page's statement, its body and headers (the list's edge ceiling calls it too,
    bench/ceilings/list_edge.py)."""
    async with ceiling.connection() as conn:
        # The cursor, no search, no price range, not only in stock, no category, the limit,
        # no currency: $1 to $9 of sql/products_list.sql.
        rows = await conn.fetch(_QUERY, *after, None, None, None, False, None, limit + 1, None)
    headers = JSON
    cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        cursor = _cursors.encode(_SCOPE, (last["created_at"], last["id"]))
        query = urlencode({**params, "cursor": cursor})
        link = f'<{url}?{query}>; rel="next"'
        headers = [*JSON, (b"link", link.encode())]
    body = orjson.dumps(
        {"data": [product(row) for row in rows], "next_cursor": cursor}, option=OPTIONS
    )
    return body, headers
