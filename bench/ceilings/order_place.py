"""Ceiling 4: what ``POST /v1/orders`` must do at the least: the order transaction's
statements, the very ones from ``sql/`` in hotpath's order, in one transaction.

Per request: the body parsed and hashed (the idempotency key's request hash); then in one
transaction the key's advisory lock, the stored-answer lookup, one conditional stock update
per product (ascending ids), the order with its items (one statement), the stored answer with the
``order.placed`` and ``stock.changed`` outbox events (one statement); a 201 with the order as
hotpath writes it and its ``Location``. No framework, no token verification (the buyer is the bearer
token's ``sub``, read without checking the signature), no validation beyond what the SQL needs,
no cache invalidation after the commit. Errors are not handled: the bench sends valid orders.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import orjson

from bench.ceilings.database import JSON, Ceiling, answer, lifespan, read_body

_ceiling = Ceiling()
_sql = _ceiling.queries.sql
_LOCK = _sql("get_idempotency_lock")
_STORED = _sql("get_idempotency_key")
_STOCK = _sql("update_product_stock")
_ORDER = _sql("create_order")
_STORE = _sql("create_idempotency_key_and_events")
_KEY_TTL = dt.timedelta(hours=24)
_OPTIONS = orjson.OPT_UTC_Z


def _buyer(headers: dict[bytes, bytes]) -> int:
    token = headers[b"authorization"].split(b" ", 1)[1]
    claims = token.split(b".")[1]
    payload = orjson.loads(base64.urlsafe_b64decode(claims + b"=" * (-len(claims) % 4)))
    return int(payload["sub"])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(_ceiling, receive, send)
        return
    if scope["method"] != "POST":  # the bench's readiness probe
        await answer(send, 405, b'{"status":405}', JSON)
        return
    headers = dict(scope["headers"])
    key = headers[b"idempotency-key"].decode()
    body = orjson.loads(await read_body(receive))
    request_hash = hashlib.sha256(orjson.dumps(body)).digest()
    user_id = _buyer(headers)
    quantities: dict[int, int] = {}
    for line in body["items"]:
        quantities[line["product_id"]] = quantities.get(line["product_id"], 0) + line["quantity"]
    order_id, rendered, _ = await place(_ceiling, user_id, key, request_hash, quantities)
    location = f"/v1/orders/{order_id}".encode()
    await answer(send, 201, rendered, [*JSON, (b"location", location)])


async def place(
    ceiling: Ceiling, user_id: int, key: str, request_hash: bytes, quantities: dict[int, int]
) -> tuple[int, bytes, list[Any]]:
    """The order's transaction: the order's id, its answer's body and the products' rows after
    the stock update (the order's edge ceiling invalidates them, bench/ceilings/order_edge.py)."""
    async with ceiling.connection() as pooled:
        conn: Any = pooled  # records indexed without None checks: the bench sends valid orders
        transaction = conn.transaction()
        await transaction.start()
        try:
            if not await conn.fetchval(_LOCK, user_id, key):
                raise RuntimeError("the bench never reuses an Idempotency-Key")
            stored = await conn.fetchrow(_STORED, user_id, key)
            if stored is not None:
                raise RuntimeError("the bench never reuses an Idempotency-Key")
            taken = [
                await conn.fetchrow(_STOCK, pid, -quantities[pid]) for pid in sorted(quantities)
            ]
            items = [(p["id"], quantities[p["id"]], p["price_minor"]) for p in taken]
            total = sum(quantity * price for _, quantity, price in items)
            order = await conn.fetchrow(
                _ORDER,
                user_id,
                taken[0]["currency"],
                total,
                [item[0] for item in items],
                [item[1] for item in items],
                [item[2] for item in items],
            )
            item_views = [
                {"product_id": pid, "quantity": quantity, "unit_price_minor": price}
                for pid, quantity, price in items
            ]
            view = {
                "id": order["id"],
                "user_id": order["user_id"],
                "status": order["status"],
                "currency": order["currency"],
                "total_minor": order["total_minor"],
                "items": item_views,
                "created_at": order["created_at"],
                "updated_at": order["updated_at"],
            }
            rendered = orjson.dumps(view, option=_OPTIONS)
            event = {k: view[k] for k in ("id", "user_id", "status", "currency", "total_minor")}
            stock_events = [
                orjson.dumps(
                    {
                        "id": p["id"],
                        "sku": p["sku"],
                        "version": p["version"],
                        "price_minor": p["price_minor"],
                        "currency": p["currency"],
                        "stock": p["stock"],
                        "delta": -quantities[p["id"]],
                        "reason": "order.placed",
                        "order_id": order["id"],
                    }
                ).decode()
                for p in taken
            ]
            expires = dt.datetime.now(dt.UTC) + _KEY_TTL
            # The stored answer, then order.placed and one stock.changed per product, in one
            # statement. No traceparent (the last argument): the bench sends none, so hotpath
            # stores none.
            await conn.execute(
                _STORE,
                user_id,
                key,
                request_hash,
                201,
                rendered,
                expires,
                ["order.placed", *["stock.changed"] * len(taken)],
                ["order", *["product"] * len(taken)],
                [str(order["id"]), *[str(p["id"]) for p in taken]],
                [orjson.dumps({**event, "items": item_views}).decode(), *stock_events],
                None,
            )
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
    return order["id"], rendered, taken
