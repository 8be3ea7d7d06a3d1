"""Every list's page size comes from one definition: server/web/pagination.py's limits, through
server/web/schemas.py's PageLimit."""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import re
import typing
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from server.routes import build_routes
from server.web.apidoc import EndpointDoc, endpoint_doc
from server.web.openapi import build_openapi
from server.web.pagination import DEFAULT_LIMIT, MAX_LIMIT, page_response
from server.web.responses import dumps


def list_routes() -> list[tuple[Route, EndpointDoc, type]]:
    found = []
    for route in build_routes(lambda: b"{}"):
        if not isinstance(route, Route):
            continue
        doc = endpoint_doc(inspect.unwrap(route.endpoint))
        if doc is None or doc.query is None:
            continue
        if "limit" in {field.name for field in msgspec.structs.fields(doc.query)}:
            found.append((route, doc, doc.query))
    return found


def declared(query: type, name: str) -> object:
    """The annotation as written (the schema modules postpone evaluation: a string)."""
    for cls in query.__mro__:
        annotations = inspect.get_annotations(cls)
        if name in annotations:
            return annotations[name]
    raise AssertionError(f"{query.__name__} declares no {name}")


def test_every_list_takes_the_one_page_limit() -> None:
    routes = list_routes()
    assert len(routes) >= 5
    for route, doc, query in routes:
        # Not a copy of the numbers: equal copies would pass any check of the values.
        assert declared(query, "limit") == "PageLimit", route.path
        hint = typing.get_type_hints(query, include_extras=True)["limit"]
        (meta,) = typing.get_args(hint)[1:]
        assert (meta.ge, meta.le) == (1, MAX_LIMIT), route.path
        (limit,) = (f for f in msgspec.structs.fields(query) if f.name == "limit")
        assert limit.default == DEFAULT_LIMIT, route.path
        for quoted in re.findall(r"`limit` ≤ (\d+)", doc.description):
            assert int(quoted) == MAX_LIMIT, route.path


def test_the_document_states_the_limits() -> None:
    paths = build_openapi(build_routes(lambda: b"{}"), title="t", version="1")["paths"]
    for route, _, _ in list_routes():
        operation = paths[route.path_format]["get"]
        (limit,) = (p for p in operation["parameters"] if p["name"] == "limit")
        assert limit["schema"]["maximum"] == MAX_LIMIT
        assert limit["schema"]["minimum"] == 1
        assert limit["schema"].get("default", DEFAULT_LIMIT) == DEFAULT_LIMIT


class _Item(msgspec.Struct):
    id: uuid.UUID
    at: dt.datetime
    amount: decimal.Decimal
    tags: list[str]
    day: dt.date


def _page_bytes(items: list[Any], cursor: str | None) -> bytes:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/x",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "scheme": "http",
        "server": ("testserver", 80),
    }
    return bytes(page_response(Request(scope), items, cursor).body)


def test_a_page_is_encoded_whole_by_msgspec_into_the_bytes_orjson_wrote() -> None:
    """The Page Struct changes how a page is encoded, not what: the same bytes as the orjson
    path (each Struct turned into builtins first) for the types response Structs hold."""
    items: list[Any] = [
        _Item(
            uuid.UUID(int=n),
            dt.datetime(2026, 12, 7, 3, 4, 5, 678901, tzinfo=dt.UTC),
            decimal.Decimal("19.90"),
            ["a", "é"],
            dt.date(2026, 12, 7),
        )
        for n in range(3)
    ]
    items.append({"plain": True, "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    for cursor in ("c1", None):
        expected = dumps({"data": items, "next_cursor": cursor})
        assert _page_bytes(items, cursor) == expected
