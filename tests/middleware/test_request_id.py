from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import get_contextvars

from middleware import RequestIdMiddleware
from tests.fixtures.support import task_per_request

SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
GENERATED = re.compile(r"[0-9a-f]{32}")


async def echo(request: Request) -> Response:
    return JSONResponse(
        {"scope": request.scope["request_id"], "context": get_contextvars().get("http.request.id")}
    )


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


def client(header: str = "x-request-id") -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/echo", echo), Route("/boom", boom)])
    transport = httpx.ASGITransport(
        app=task_per_request(RequestIdMiddleware(app, header=header)), raise_app_exceptions=False
    )
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_generates_an_id_and_exposes_it_in_scope_context_and_header() -> None:
    async with client() as http:
        first = await http.get("/echo")
        second = await http.get("/echo")
    request_id = first.headers["x-request-id"]
    assert GENERATED.fullmatch(request_id)
    assert first.json() == {"scope": request_id, "context": request_id}
    assert second.headers["x-request-id"] != request_id


async def test_the_id_stays_with_its_request() -> None:
    # Served as granian serves it, a task per request: the id is bound in that task's context
    # and is gone with it, neither left in the server's context nor seen by the next request.
    async with client() as http:
        first = await http.get("/echo")
        assert "http.request.id" not in get_contextvars()
        second = await http.get("/echo")
    assert first.json()["context"] == first.headers["x-request-id"]
    assert second.json()["context"] == second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert "http.request.id" not in get_contextvars()


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(incoming=st.from_regex(SANE, fullmatch=True))
async def test_sane_incoming_id_is_kept(incoming: str) -> None:
    async with client() as http:
        response = await http.get("/echo", headers={"x-request-id": incoming})
    assert response.headers["x-request-id"] == incoming
    assert response.json()["scope"] == incoming


# Printable ASCII without the edge spaces an HTTP stack would strip, so the raw value arrives.
_header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@settings(max_examples=50)
@given(
    incoming=st.one_of(
        _header_text.filter(lambda value: not SANE.fullmatch(value)),
        st.text(st.sampled_from("ab1-"), min_size=129, max_size=300),
        st.just("has space"),
        st.just("caf\u00e9"),
    )
)
async def test_insane_incoming_id_is_replaced(incoming: str) -> None:
    async with client() as http:
        response = await http.get("/echo", headers={b"x-request-id": incoming.encode("latin-1")})
    request_id = response.headers["x-request-id"]
    assert request_id != incoming
    assert GENERATED.fullmatch(request_id)


async def test_empty_incoming_id_is_replaced() -> None:
    async with client() as http:
        response = await http.get("/echo", headers={"x-request-id": ""})
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_id_is_on_500_and_404_answers() -> None:
    async with client() as http:
        crashed = await http.get("/boom", headers={"x-request-id": "trace-500"})
        missing = await http.get("/nowhere")
    assert crashed.status_code == 500
    assert crashed.headers["x-request-id"] == "trace-500"
    assert missing.status_code == 404
    assert GENERATED.fullmatch(missing.headers["x-request-id"])


async def test_custom_header_name() -> None:
    async with client(header="X-Correlation-ID") as http:
        response = await http.get("/echo", headers={"x-correlation-id": "abc-1"})
    assert response.headers["x-correlation-id"] == "abc-1"
    assert "x-request-id" not in response.headers


async def test_response_headers_of_the_app_are_kept_and_not_mutated() -> None:
    shared = Response("ok", headers={"x-app": "1"})
    before = list(shared.raw_headers)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await shared(scope, receive, send)

    transport = httpx.ASGITransport(app=RequestIdMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/")
    assert response.headers["x-app"] == "1"
    assert "x-request-id" in response.headers
    assert shared.raw_headers == before


async def test_non_http_scopes_pass_straight_through() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    inner: ASGIApp = app
    await RequestIdMiddleware(inner)({"type": "lifespan"}, receive, send)
    assert seen == [{"type": "lifespan"}]


def test_rejects_a_bad_header_name() -> None:
    with pytest.raises(ValueError, match="header"):
        RequestIdMiddleware(Starlette(), header="x request id")
