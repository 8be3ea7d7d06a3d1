"""/livez is an ASGI endpoint (server/web/asgi_endpoint.py): the router calls it itself, and it
sends, byte for byte, what it sent as a prepared answer (server/web/prepared.py), with the same
OpenAPI operation."""

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
from server.web.prepared import PreparedAnswer, prepared
from server.web.responses import dumps

# What /livez was before it was an ASGI endpoint (its answer and its handler's decorators).
BEFORE = PreparedAnswer(dumps({"status": "ok"}), headers={"cache-control": "no-store"})


def _prepared_livez() -> object:
    @api(summary="Liveness probe", tags=("health",), responses={200: Liveness})
    @prepared(BEFORE)
    async def livez(request: Request) -> Response:
        return BEFORE.response()

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


async def test_it_sends_what_the_prepared_answer_sent_with_fresh_messages() -> None:
    first = await _served(handlers.livez)
    assert first == await _served(BEFORE)
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


def test_the_openapi_operation_is_the_one_the_prepared_handler_had() -> None:
    def document(endpoint: object) -> object:
        routes = [guarded_route("/livez", endpoint, ["GET"], ANONYMOUS)]  # type: ignore[arg-type]
        return build_openapi(routes, title="t", version="1")

    assert document(handlers.livez) == document(_prepared_livez())
