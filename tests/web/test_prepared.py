"""A prepared answer is served as raw ASGI and says what its handler says."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from server.web.access import ANONYMOUS, AUTHENTICATED, PUBLIC, GuardedRoute, guarded_route
from server.web.prepared import PreparedAnswer, prepared, prepared_answer

ANSWER = PreparedAnswer(b'{"a":1}', headers={"Cache-Control": "no-store"})


@prepared(ANSWER)
async def handler(request: Request) -> Response:
    return ANSWER.response()


async def _served(app: object) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await app(scope, receive, send)  # type: ignore[operator]
    return sent


async def test_the_route_serves_the_answer_itself_with_fresh_messages() -> None:
    route = guarded_route("/p", handler, ["GET"], ANONYMOUS)
    assert route.app is ANSWER
    first, second = await _served(route.app), await _served(route.app)
    start, body = first
    assert start == {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"7"),
            (b"cache-control", b"no-store"),
        ],
    }
    assert body == {"type": "http.response.body", "body": b'{"a":1}'}
    # The layers above write into the start message and its headers: never shared.
    assert first[0] == second[0]
    assert first[0] is not second[0]
    assert first[0]["headers"] is not second[0]["headers"]


async def test_the_handler_called_directly_answers_the_same() -> None:
    response = await handler(Request({"type": "http", "headers": []}))
    assert (response.status_code, response.body) == (200, b'{"a":1}')
    sent = await _served(response)
    assert sent == await _served(ANSWER)


def test_only_an_open_route_serves_a_prepared_answer() -> None:
    assert isinstance(guarded_route("/p", handler, ["GET"], PUBLIC), GuardedRoute)
    with pytest.raises(TypeError, match="access guard"):
        guarded_route("/p", handler, ["GET"], AUTHENTICATED)


def test_an_unmarked_handler_has_no_prepared_answer() -> None:
    async def plain(request: Request) -> Response:
        return Response()

    assert prepared_answer(plain) is None
    assert guarded_route("/q", plain, ["GET"], ANONYMOUS).app is not None
