"""The product list's query: its defaults resolved, its rules checked (currencies, price
range, relevance), and its cursors, whose scope is the whole query."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgspec

from server.catalog import schemas
from server.catalog.repository import Direction, ProductFilter
from server.web.errors import InvalidParameter
from server.web.pagination import CursorCodec, InvalidCursor

_CURSOR_TYPES: dict[str, type] = {
    "created_at": str,
    "price": int,
    "name": str,
    "relevance": float,
}


@dataclass(frozen=True, slots=True)
class Listing:
    """A product list query with its defaults resolved and its rules checked."""

    query: schemas.ProductQuery
    sort: str
    direction: Direction
    where: ProductFilter


def _invalid(name: str, detail: str, message: str) -> InvalidParameter:
    return InvalidParameter(message, extra={"errors": [{"pointer": f"/{name}", "detail": detail}]})


def listing_of(query: schemas.ProductQuery) -> Listing:
    sort = query.sort or ("relevance" if query.q else "created_at")
    if sort == "relevance" and not query.q:
        raise _invalid("sort", "needs q", "sort=relevance ranks the matches of a search: add q.")
    if sort == "relevance" and query.order == "asc":
        raise _invalid(
            "order", "relevance is best first", "sort=relevance lists the best match first only."
        )
    if (
        query.min_price is not None
        and query.max_price is not None
        and query.min_price > query.max_price
    ):
        raise _invalid(
            "min_price",
            "greater than max_price",
            f"min_price ({query.min_price}) is greater than max_price ({query.max_price}): "
            "no price is in that range.",
        )
    priced = [
        name
        for name, used in (
            ("min_price", query.min_price is not None),
            ("max_price", query.max_price is not None),
            ("sort", sort == "price"),
        )
        if used
    ]
    if priced and query.currency is None:
        # Minor units of two currencies do not compare: USD 500 is not between EUR 400 and 600.
        raise _invalid(
            "currency",
            "required with " + ", ".join(priced),
            f"Prices in different currencies do not compare: {', '.join(priced)} needs "
            "currency=<ISO 4217 code> (currency=EUR).",
        )
    direction: Direction = query.order or ("desc" if sort == "relevance" else "asc")
    where = ProductFilter(
        query.q,
        query.min_price,
        query.max_price,
        query.in_stock,
        query.category,
        query.currency,
    )
    return Listing(query, sort, direction, where)


def scope(listing: Listing) -> str:
    # The sort and every filter are the cursor's scope: a cursor of one listing is refused by
    # another (a filter added to ProductFilter joins the scope with it).
    values = [listing.sort, listing.direction, *dataclasses.astuple(listing.where)]
    return "products:" + msgspec.json.encode(values).decode()


def after(listing: Listing, cursors: CursorCodec) -> tuple[Any, int] | None:
    query = listing.query
    if not query.cursor:
        return None
    values = cursors.decode_values(scope(listing), query.cursor)
    if len(values) != 2:
        raise InvalidCursor("The cursor is not valid for this list.")
    value, last_id = values
    if not isinstance(value, _CURSOR_TYPES[listing.sort]) or not isinstance(last_id, int):
        raise InvalidCursor("The cursor is not valid for this list.")
    if isinstance(value, str) and listing.sort == "created_at":
        try:
            return dt.datetime.fromisoformat(value), last_id
        except ValueError:
            raise InvalidCursor("The cursor is not valid for this list.") from None
    return value, last_id
