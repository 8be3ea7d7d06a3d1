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
from server.web.pagination import DEFAULT_LIMIT, MAX_LIMIT, next_link, page_response
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


def _starlette_link(scope: dict[str, Any], cursor: str) -> bytes:
    """The Link header as page_response wrote it before next_link (Starlette's URL)."""
    return f'<{Request(scope).url.include_query_params(cursor=cursor)}>; rel="next"'.encode(
        "latin-1"
    )


def _link_scope(
    query: bytes, host: bytes | None, server: Any, path: str = "/v1/products", scheme: str = "http"
) -> dict[str, Any]:
    headers = [(b"user-agent", b"wrk")] + ([] if host is None else [(b"host", host)])
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": headers,
        "scheme": scheme,
        "server": server,
    }


_CURSOR = "AbC-_09xyz" * 6
_QUERIES = [
    b"",
    b"limit=50",
    b"limit=50&cursor=old",
    b"cursor=old&limit=50",
    b"cursor=a&cursor=b&limit=2",
    b"cursor&limit=3",
    b"limit=3&&&q=ket&",
    b"q=a=b&sort=name",
    b"=x&limit",
    b"q=caf\xc3\xa9",
    b"q=caf\xe9",
    b"q=a+b&limit=5",
    b"q=a%20b&cursor=x%2Fy",
    b"q=a b&c=/;:@!$'()*,",
    b"q=x#frag&limit=1",
    b"q=x\tz&limit=1\r\n",
    b"q=\x01\x7f&limit=1",
    b"min_price=5&currency=EUR&sort=price&order=desc&in_stock=true",
    b"q=%ZZ&bad=%",
    b"cursor%3Dx=1",
]
_HOSTS: list[tuple[bytes | None, Any]] = [
    (b"127.0.0.1:8000", ("127.0.0.1", 8000)),
    (b"testserver", ("testserver", 80)),
    (b"api.example.com:443", ("10.0.0.1", 8000)),
    (None, ("127.0.0.1", 8000)),
    (None, ["::1", 8443]),
    (None, None),
    (b"bad host:port:x", ("127.0.0.1", 80)),
    (b"[::1]:8000", None),
    (b"h\xe9te", None),
]


def test_next_link_is_starlettes_link_byte_for_byte() -> None:
    """next_link builds the Link header without Starlette's URL for a plain query string and
    hands the rest to it: the bytes are the same for every query, host, scheme and path."""
    for query in _QUERIES:
        for host, server in _HOSTS:
            for scheme, path in (("http", "/v1/products"), ("https", "//v1/a b?c#d")):
                for cursor in (_CURSOR, "with space+plus/slash"):
                    scope = _link_scope(query, host, server, path, scheme)
                    expected = _outcome(_starlette_link, scope, cursor)
                    assert _outcome(_next_link, scope, cursor) == expected, (query, host, path)


def _next_link(scope: dict[str, Any], cursor: str) -> bytes:
    return next_link(Request(scope), cursor)


def _outcome(link: Any, scope: dict[str, Any], cursor: str) -> bytes | type[Exception]:
    """The link, or the error it fails with (a query string not UTF-8 fails Starlette's URL:
    it must fail alike, not answer another link)."""
    try:
        return bytes(link(scope, cursor))
    except Exception as exc:
        return type(exc)


def test_a_page_with_a_next_cursor_carries_the_link() -> None:
    scope = _link_scope(b"limit=1&q=ket", b"127.0.0.1:8000", ("127.0.0.1", 8000))
    response = page_response(Request(scope), [{"id": 1}], _CURSOR)
    assert response.raw_headers[2] == (b"link", _starlette_link(scope, _CURSOR))
    assert response.raw_headers[2] == (
        b"link",
        b"<http://127.0.0.1:8000/v1/products?limit=1&q=ket&cursor="
        + _CURSOR.encode()
        + b'>; rel="next"',
    )
    assert [name for name, _ in page_response(Request(scope), [], None).raw_headers] == [
        b"content-type",
        b"content-length",
    ]
