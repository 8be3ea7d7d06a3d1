"""ASGI endpoints (server/web/asgi_endpoint.py): how a route serves one, what the OpenAPI
document says of it, and that the product read sends what its Starlette form sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from server.auth.principal import Principal
from server.catalog import handlers as catalog_handlers
from server.catalog.cache import CachedProduct
from server.web.access import (
    AUTHENTICATED,
    PUBLIC,
    SESSION,
    GuardedRoute,
    guarded_route,
)
from server.web.apidoc import api
from server.web.asgi_endpoint import (
    asgi_endpoint,
    body_message,
    empty_start,
    is_asgi_endpoint,
    json_start,
)
from server.web.errors import Forbidden, NotFound, Unauthorized
from server.web.openapi import build_openapi
from server.web.responses import PreparedJSON, scope_header, scope_path_id
from server.web.state import scope_container

BODY = b'{"id":7}'


@api(summary="One item", responses={200: None}, errors=(404,))
@asgi_endpoint
async def item(scope: Scope, receive: Receive, send: Send) -> None:
    item_id = scope_path_id(scope, "item_id", "No such item.")
    await send(json_start(BODY, [(b"x-item", str(item_id).encode())]))
    await send(body_message(BODY))


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _served(
    served: Callable[[Scope, Receive, Send], Awaitable[None]], /, **scope: Any
) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    whole = {"type": "http", "method": "GET", "path": "/", "headers": [], **scope}
    await served(whole, _receive, send)
    return sent


def _principal(session: str | None = "s1") -> Principal:
    return Principal(user_id=1, session_id=session, roles=(), permissions=frozenset(), issued_at=0)


def test_the_mark_is_an_async_functions_only() -> None:
    assert is_asgi_endpoint(item)
    assert not is_asgi_endpoint(lambda scope, receive, send: None)

    def blocking(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        asgi_endpoint(blocking)  # type: ignore[type-var]


async def test_an_open_route_calls_the_handler_itself() -> None:
    route = guarded_route("/items/{item_id}", item, ["GET"], PUBLIC)
    assert route.app is item
    start, body = await _served(route.app, path_params={"item_id": "12"})
    assert start == {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"8"),
            (b"x-item", b"12"),
        ],
    }
    assert body == {"type": "http.response.body", "body": BODY}


async def test_its_errors_go_up_as_a_starlette_endpoints_do() -> None:
    route = guarded_route("/items/{item_id}", item, ["GET"], PUBLIC)
    with pytest.raises(NotFound, match="No such item"):
        await _served(route.app, path_params={"item_id": "012"})


async def test_a_guarded_route_checks_the_scopes_principal_before_the_handler() -> None:
    called: list[Scope] = []

    @asgi_endpoint
    async def mine(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)
        await send(empty_start(204, []))
        await send(body_message())

    signed_in = guarded_route("/mine", mine, ["GET"], AUTHENTICATED)
    with pytest.raises(Unauthorized):
        await _served(signed_in.app, principal=None)
    with pytest.raises(Unauthorized):
        await _served(signed_in.app)  # no principal at all: the authentication layer skipped
    api_key = dataclasses.replace(_principal(session=None), api_key_id="k3")
    with pytest.raises(Forbidden):
        await _served(guarded_route("/mine", mine, ["GET"], SESSION).app, principal=api_key)
    assert called == []
    start, body = await _served(signed_in.app, principal=_principal())
    assert (start["status"], start["headers"], body["body"]) == (204, [], b"")
    assert len(called) == 1


def test_the_openapi_document_reads_it_as_any_handler() -> None:
    routes = [guarded_route("/items/{item_id}", item, ["GET"], PUBLIC)]
    doc = build_openapi(routes, title="t", version="1")
    get = doc["paths"]["/items/{item_id}"]["get"]
    assert get["summary"] == "One item"
    assert get["operationId"] == "item"
    # PUBLIC adds the 401 a bad credential gets, as for a Starlette endpoint.
    assert {"200", "401", "404", "500"} <= set(get["responses"])
    assert isinstance(routes[0], GuardedRoute)
    assert routes[0].methods == {"GET", "HEAD"}


def test_empty_start_is_what_a_bodyless_starlette_response_sends() -> None:
    response = Response(status_code=304, headers={"etag": '"p1v2"', "cache-control": "public"})
    assert empty_start(304, [(b"etag", b'"p1v2"'), (b"cache-control", b"public")]) == {
        "type": "http.response.start",
        "status": 304,
        "headers": response.raw_headers,
    }
    assert body_message() == {"type": "http.response.body", "body": response.body}


def test_json_start_is_what_prepared_json_sends_and_fresh_each_time() -> None:
    extra = ((b"etag", b'"p1v2"'),)
    first, second = json_start(BODY, extra, 201), json_start(BODY, extra, 201)
    prepared = PreparedJSON(BODY, list(extra), status_code=201)
    assert first["status"] == prepared.status_code
    assert first["headers"] == prepared.raw_headers
    assert first["headers"] is not second["headers"]


def test_scope_readers_answer_what_the_request_readers_answer() -> None:
    app = SimpleNamespace(hotpath_container=object())
    scope = {
        "type": "http",
        "app": app,
        "headers": [(b"if-none-match", b'"a"'), (b"if-none-match", b'"b"')],
        "path_params": {"product_id": "42"},
    }
    request = Request(scope)
    assert scope_header(scope, b"if-none-match") == request.headers.get("if-none-match")
    assert scope_header(scope, b"accept") is None
    assert scope_path_id(scope, "product_id", "none") == 42
    assert scope_container(scope) is app.hotpath_container


# --- the product read ------------------------------------------------------------------------

CACHED = CachedProduct(3, '"p7v3"', b'{"id":7,"name":"Kettle"}')
PUBLIC_CACHE = "public, max-age=5, stale-while-revalidate=30"


def _catalog_scope(found: CachedProduct | None, **extra: Any) -> dict[str, Any]:
    async def find_cached(product_id: int, render: object) -> CachedProduct | None:
        assert product_id == 7
        return found

    catalog = SimpleNamespace(find_cached=find_cached)
    app = SimpleNamespace(hotpath_container=SimpleNamespace(catalog=catalog))
    return {"app": app, "path_params": {"product_id": "7"}, **extra}


async def test_the_product_read_sends_what_its_starlette_form_sent() -> None:
    start, body = await _served(catalog_handlers.get_product, **_catalog_scope(CACHED))
    before = PreparedJSON(
        CACHED.body, [(b"etag", CACHED.etag.encode()), (b"cache-control", PUBLIC_CACHE.encode())]
    )
    assert start == {
        "type": "http.response.start",
        "status": 200,
        "headers": before.raw_headers,
    }
    assert body == {"type": "http.response.body", "body": CACHED.body}


async def test_the_products_304_is_what_its_starlette_form_sent() -> None:
    headers = [(b"if-none-match", b'W/"p7v3", "x"')]
    scope = _catalog_scope(CACHED, headers=headers)
    start, body = await _served(catalog_handlers.get_product, **scope)
    before = Response(status_code=304, headers={"etag": CACHED.etag, "cache-control": PUBLIC_CACHE})
    assert (start["status"], start["headers"]) == (304, before.raw_headers)
    assert body == {"type": "http.response.body", "body": b""}


async def test_a_missing_product_is_the_not_found_error() -> None:
    with pytest.raises(NotFound, match="No such product"):
        await _served(catalog_handlers.get_product, **_catalog_scope(None))


# --- the Starlette endpoint's route ----------------------------------------------------------


async def test_a_starlette_endpoint_sends_what_its_response_would() -> None:
    async def plain(request: Request) -> Response:
        return PreparedJSON(BODY, [(b"etag", b'"e"')], status_code=201)

    sent = await _served(guarded_route("/p", plain, ["GET"], PUBLIC).app)
    assert sent == await _served(PreparedJSON(BODY, [(b"etag", b'"e"')], status_code=201))


async def test_a_streaming_response_or_a_background_task_is_served_by_the_response() -> None:
    ran: list[str] = []

    async def chunks() -> Any:
        yield b"a"
        yield b"b"

    async def streaming(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/plain")

    async def with_task(request: Request) -> Response:
        return Response(b"x", background=BackgroundTask(ran.append, "done"))

    # ASGI 2.4: the stream is sent without a task listening for the disconnect.
    asgi = {"version": "3.0", "spec_version": "2.4"}
    sent = await _served(guarded_route("/s", streaming, ["GET"], PUBLIC).app, asgi=asgi)
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"ab"
    await _served(guarded_route("/t", with_task, ["GET"], PUBLIC).app)
    assert ran == ["done"]


async def test_a_starlette_endpoint_on_a_guarded_route_is_refused_before_the_handler() -> None:
    called: list[Request] = []

    async def mine(request: Request) -> Response:
        called.append(request)
        return Response()

    with pytest.raises(Unauthorized):
        await _served(guarded_route("/m", mine, ["GET"], AUTHENTICATED).app, principal=None)
    assert called == []
