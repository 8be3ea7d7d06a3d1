"""HTTP in/out for orders."""

from __future__ import annotations

import hashlib
import re

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from server.orders import schemas
from server.orders.repository import Order
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.errors import BadRequest
from server.web.pagination import paged_response
from server.web.responses import (
    JSONResponse,
    PreparedJSON,
    dumps,
    header,
    path_id,
    read_json,
    read_query,
)
from server.web.state import container

_LIST_SCOPE = "orders"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class _Placed(msgspec.Struct):
    id: int


_PLACED = msgspec.json.Decoder(_Placed)


class IdempotencyKeyRequired(BadRequest):
    slug = "idempotency-key-required"
    title = "Idempotency-Key header required"


def _render(order: Order) -> bytes:
    return dumps(schemas.order_view(order))


@api(
    summary="Place an order",
    description="Needs an `Idempotency-Key` header: the same key and body replay the first "
    "answer byte for byte, the same key with another body is a 422, and a retry while the "
    "first request is still running is a 409. Stock is taken all or nothing: a 409 "
    "`out-of-stock` lists each short item with the quantity `requested` and the quantity "
    "`available`. A `product_id` that names no product is a 422 `unknown-product` whose "
    "`errors` point at the item. The `Location` of the order is in the answer. The buyer's "
    "email address must be verified (403 `email-not-verified` otherwise) unless the server "
    "runs with `HOTPATH_ORDERS_NEED_VERIFIED_EMAIL=false`.",
    tags=("orders",),
    body=schemas.NewOrderBody,
    request_headers=(("Idempotency-Key", "A unique key per order attempt (1-255 chars)", True),),
    responses={201: schemas.OrderView},
    errors=(400, 403, 409, 422),
    problems={409: schemas.OrderConflict},
)
async def place_order(request: Request) -> Response:
    key = header(request, b"idempotency-key") or ""
    if not _KEY.fullmatch(key):
        raise IdempotencyKeyRequired(
            "Send an Idempotency-Key header of 1 to 255 visible characters."
        )
    body = await read_json(request, schemas.NewOrderBody)
    # The decoded body, re-encoded: whitespace or key order do not make it "another body".
    request_hash = hashlib.sha256(msgspec.json.encode(body)).digest()
    status, payload = await container(request).orders.place(
        principal_of(request),
        key,
        request_hash,
        [(line.product_id, line.quantity) for line in body.items],
        _render,
    )
    # A replay answers from the stored bytes, so the new order's id is read back from them.
    location = f"/v1/orders/{_PLACED.decode(payload).id}".encode()
    return PreparedJSON(payload, [(b"location", location)], status_code=status)


@api(
    summary="List orders",
    description="Your orders, newest first; with `orders:read_all`, everyone's, filtered by "
    "`user_id` and `status`.",
    tags=("orders",),
    query=schemas.OrderQuery,
    responses={200: schemas.OrderList},
    errors=(400, 403),
)
async def list_orders(request: Request) -> Response:
    query = read_query(request, schemas.OrderQuery)
    services = container(request)
    before = services.cursors.decode(_LIST_SCOPE, query.cursor) if query.cursor else None
    rows = await services.orders.page(
        principal_of(request),
        user_id=query.user_id,
        status=query.status,
        before=before,
        limit=query.limit + 1,
    )
    return paged_response(
        request,
        rows,
        limit=query.limit,
        cursors=services.cursors,
        scope=_LIST_SCOPE,
        position=lambda o: (o.created_at, o.id),
        view=schemas.order_view,
    )


@api(summary="One order", tags=("orders",), responses={200: schemas.OrderView}, errors=(404,))
async def get_order(request: Request) -> Response:
    order = await container(request).orders.get(
        principal_of(request), path_id(request, "order_id", "No such order.")
    )
    return JSONResponse(schemas.order_view(order))


@api(
    summary="Cancel an order",
    description="The owner, while it is placed; restocks.",
    tags=("orders",),
    responses={200: schemas.OrderView},
    errors=(404, 409),
)
async def cancel_order(request: Request) -> Response:
    order = await container(request).orders.cancel(
        principal_of(request), path_id(request, "order_id", "No such order.")
    )
    return JSONResponse(schemas.order_view(order))


@api(
    summary="Mark an order fulfilled",
    tags=("orders",),
    responses={200: schemas.OrderView},
    errors=(404, 409),
)
async def fulfil_order(request: Request) -> Response:
    order = await container(request).orders.fulfil(
        principal_of(request), path_id(request, "order_id", "No such order.")
    )
    return JSONResponse(schemas.order_view(order))
