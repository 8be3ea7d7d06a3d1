"""listing_of keeps what it resolved of a query (sort, direction, filter, cursor scope) per query
without its page: a kept resolution must be the one the query would get, never another query's,
never a refused query's, and the page (limit, cursor) is always the request's own."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from server.catalog import listing
from server.catalog.listing import _resolve, listing_of
from server.catalog.schemas import ProductQuery
from server.web.errors import InvalidParameter

# One value a field may take besides its default, per field but the page's.
_OTHER: dict[str, Any] = {
    "q": "ket",
    "currency": "EUR",
    "min_price": 100,
    "max_price": 500,
    "in_stock": True,
    "category": "kitchen",
    "sort": "price",
    "order": "desc",
}


def _queries() -> list[ProductQuery]:
    """Every combination of the fields at their default or their other value (256 queries,
    accepted and refused), each field alone differing between some pair of them."""
    names = list(_OTHER)
    found = []
    for chosen in itertools.product((False, True), repeat=len(names)):
        fields = {name: _OTHER[name] for name, on in zip(names, chosen, strict=True) if on}
        found.append(ProductQuery(limit=7, **fields))
    return found


def _outcome(query: ProductQuery) -> Any:
    try:
        found = listing_of(query)
    except InvalidParameter as exc:
        return ("refused", str(exc), exc.extra)
    assert found.query is query
    return (found.sort, found.direction, found.where, found.scope)


def _expected(query: ProductQuery) -> Any:
    try:
        return _resolve(query)
    except InvalidParameter as exc:
        return ("refused", str(exc), exc.extra)


def test_the_fields_besides_the_page_are_the_key() -> None:
    fields = ProductQuery.__struct_fields__
    assert fields[:2] == ("limit", "cursor")
    assert set(fields[2:]) == set(_OTHER), "a new field needs a value in _OTHER"


def test_every_query_gets_its_own_resolution_however_often_and_in_any_order() -> None:
    listing._resolved.clear()
    queries = _queries()
    refused = sum(1 for q in queries if _expected(q)[0] == "refused")
    assert 0 < refused < len(queries)
    for query in queries + queries[::-1] + queries:
        assert _outcome(query) == _expected(query), query
    # Refusals are resolved again each time, never kept.
    assert len(listing._resolved) == len(queries) - refused


def test_the_page_is_the_requests_own() -> None:
    listing._resolved.clear()
    first = listing_of(ProductQuery(limit=5))
    again = listing_of(ProductQuery(limit=9, cursor="abc"))
    assert (first.query.limit, first.query.cursor) == (5, None)
    assert (again.query.limit, again.query.cursor) == (9, "abc")
    assert again.scope == first.scope
    assert again.where is first.where  # the kept one


def test_a_refused_query_is_refused_every_time() -> None:
    listing._resolved.clear()
    query = ProductQuery(min_price=5)
    for _ in range(3):
        with pytest.raises(InvalidParameter) as refused:
            listing_of(query)
        assert refused.value.extra == {
            "errors": [{"pointer": "/currency", "detail": "required with min_price"}]
        }


def test_what_is_kept_is_bounded() -> None:
    listing._resolved.clear()
    for n in range(listing._KEEP * 2 + 3):
        found = listing_of(ProductQuery(q=f"word{n}"))
        assert found.where.q == f"word{n}"
        assert len(listing._resolved) <= listing._KEEP


def test_a_listing_is_immutable() -> None:
    found = listing_of(ProductQuery())
    with pytest.raises(AttributeError):
        found.sort = "name"  # type: ignore[misc]
    assert msgspec.structs.replace(found, sort="name").sort == "name"
