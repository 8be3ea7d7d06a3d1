"""/livez is an ASGI endpoint (server/web/asgi_endpoint.py): the router calls it itself, it
sends these bytes in fresh messages (what it sent as a prepared answer before, decision 0016),
and its OpenAPI operation is the one a Starlette endpoint with the same decorator has."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from server.health import handlers
from server.health.schemas import Liveness
from server.web.access import ANONYMOUS, guarded_route
from server.web.apidoc import api
from server.web.asgi_endpoint import is_asgi_endpoint
from server.web.openapi import build_openapi


def _starlette_livez() -> object:
    @api(summary="Liveness probe", tags=("health",), responses={200: Liveness})
    async def livez(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return livez


async def _served(app: object) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/livez", "headers": []}
    await app(scope, receive, send)  # type: ignore[operator]
    return sent


async def test_the_route_calls_livez_itself() -> None:
    assert is_asgi_endpoint(handlers.livez)
    assert guarded_route("/livez", handlers.livez, ["GET"], ANONYMOUS).app is handlers.livez


async def test_it_sends_the_same_bytes_in_fresh_messages() -> None:
    first = await _served(handlers.livez)
    start, body = first
    assert start == {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"15"),
            (b"cache-control", b"no-store"),
        ],
    }
    assert body == {"type": "http.response.body", "body": b'{"status":"ok"}'}
    # The layers above write into the start message and its headers: never shared.
    second = await _served(handlers.livez)
    assert first[0] is not second[0]
    assert first[0]["headers"] is not second[0]["headers"]
    transport = httpx.ASGITransport(app=handlers.livez)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/livez")
    assert answer.json() == {"status": "ok"}
    assert answer.headers["cache-control"] == "no-store"


def test_the_openapi_operation_is_the_one_a_starlette_endpoint_has() -> None:
    def document(endpoint: object) -> object:
        routes = [guarded_route("/livez", endpoint, ["GET"], ANONYMOUS)]  # type: ignore[arg-type]
        return build_openapi(routes, title="t", version="1")

    assert document(handlers.livez) == document(_starlette_livez())
