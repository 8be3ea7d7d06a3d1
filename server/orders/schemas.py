"""Shapes of the order endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from server.orders.repository import Order
from server.web.schemas import DEFAULT_LIMIT, PageLimit, Strict

Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
ProductId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class Line(Strict):
    product_id: ProductId
    quantity: Quantity


class NewOrderBody(Strict):
    items: Annotated[list[Line], msgspec.Meta(min_length=1, max_length=100)]


class OrderQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None
    user_id: ProductId | None = None
    status: Literal["placed", "fulfilled", "cancelled"] | None = None


class ShortItem(msgspec.Struct):
    product_id: int
    requested: int
    available: int


class OrderConflict(msgspec.Struct):
    """What a 409 adds to the problem when the stock is short (`out-of-stock`): each short
    item, the quantity asked for and what is left. Other 409s (`idempotency-in-flight`) have
    no `items`."""

    items: list[ShortItem] = []


class ItemView(msgspec.Struct):
    product_id: int
    quantity: int
    unit_price_minor: int


class OrderView(msgspec.Struct):
    id: int
    user_id: int
    status: str
    currency: str
    total_minor: int
    items: list[ItemView]
    created_at: dt.datetime
    updated_at: dt.datetime


class OrderList(msgspec.Struct):
    data: list[OrderView]
    next_cursor: str | None


def order_view(order: Order) -> OrderView:
    return OrderView(
        id=order.id,
        user_id=order.user_id,
        status=order.status,
        currency=order.currency,
        total_minor=order.total_minor,
        items=[ItemView(i.product_id, i.quantity, i.unit_price_minor) for i in order.items],
        created_at=order.created_at,
        updated_at=order.updated_at,
    )
