"""The product list's query: its defaults resolved, its rules checked (currencies, price
range, relevance), and its cursors, whose scope is the whole query."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
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
# Every filter is part of the cursor's scope: a filter added to ProductFilter joins it.
_FILTERS = tuple(field.name for field in dataclasses.fields(ProductFilter))
# The last row's place in a listing sorted by a column: (that column's value, id).
_POSITIONS: dict[str, Callable[[schemas.ProductView], tuple[Any, int]]] = {
    "created_at": lambda view: (view.created_at, view.id),
    "price": lambda view: (view.price.amount_minor, view.id),
    "name": lambda view: (view.name, view.id),
}


class Listing(msgspec.Struct, frozen=True):
    """A product list query with its defaults resolved and its rules checked. A frozen Struct:
    one is made per list request, a frozen dataclass's init (object.__setattr__ per field) cost
    several times more (issue 19)."""

    query: schemas.ProductQuery
    sort: str
    direction: Direction
    where: ProductFilter
    scope: str  # its cursors' (_scope)


def _invalid(name: str, detail: str, message: str) -> InvalidParameter:
    return InvalidParameter(message, extra={"errors": [{"pointer": f"/{name}", "detail": detail}]})


# What a query's sort, direction, filter and scope depend on, and whether it is refused: every
# field but the page's (limit, cursor), which come first in ProductQuery.
_PAGE_FIELDS = ("limit", "cursor")
if schemas.ProductQuery.__struct_fields__[:2] != _PAGE_FIELDS:
    raise TypeError("ProductQuery's first fields must be limit and cursor (listing_of's key)")
_resolved: dict[tuple[Any, ...], tuple[str, Direction, ProductFilter, str]] = {}
# Queries resolved and kept (a search's words are the caller's: bounded, emptied when full).
_KEEP = 512


def listing_of(query: schemas.ProductQuery) -> Listing:
    """The query's listing; a 400 for a query the list refuses. What it resolves of a query
    (its rules checked, its filter and cursor scope) is kept per query without its page: the
    same few queries come again and again, and resolving one is most of this function's time
    (issue 19)."""
    key = msgspec.structs.astuple(query)[2:]
    resolved = _resolved.get(key)
    if resolved is None:
        resolved = _resolve(query)
        if len(_resolved) >= _KEEP:
            _resolved.clear()
        _resolved[key] = resolved
    sort, direction, where, scope = resolved
    return Listing(query, sort, direction, where, scope)


def _resolve(query: schemas.ProductQuery) -> tuple[str, Direction, ProductFilter, str]:
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
    return sort, direction, where, _scope(sort, direction, where)


def _scope(sort: str, direction: Direction, where: ProductFilter) -> str:
    # The sort and every filter are the cursor's scope: a cursor of one listing is refused by
    # another. Read field by field: dataclasses.astuple copies recursively, 5% of the list
    # handler's samples in the bench's profile (issue 19).
    values = [sort, direction, *[getattr(where, name) for name in _FILTERS]]
    return "products:" + msgspec.json.encode(values).decode()


def position(listing: Listing) -> Callable[[schemas.ProductView], tuple[Any, int]]:
    """What the next cursor of a listing sorted by a column holds of its page's last row."""
    return _POSITIONS[listing.sort]


def after(listing: Listing, cursors: CursorCodec) -> tuple[Any, int] | None:
    query = listing.query
    if not query.cursor:
        return None
    values = cursors.decode_values(listing.scope, query.cursor)
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
