"""``read_json`` reads its two headers from the scope's list and the body BodyLimitMiddleware
left in the scope (``REQUEST_BODY``): every answer (the 415s, the body, the ClientDisconnect)
is what Starlette's ``request.headers`` and ``request.body()`` gave, which it still uses when
no body is in the scope."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from middleware.types import REQUEST_BODY
from server.web import errors
from server.web.responses import decode_json, read_json, request_body


class Body(msgspec.Struct, forbid_unknown_fields=True):
    a: int


BODY = b'{"a":1}'


async def reference(request: Request, kind: type[Any]) -> Any:
    """read_json as it was written against Starlette's Request (the headers object, body())."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise errors.UnsupportedMediaType("Send the body as application/json.")
    encoding = request.headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() != "identity":
        raise errors.UnsupportedMediaType("Send the body without a Content-Encoding.")
    return decode_json(await request.body(), kind)


def receiving(*messages: Message) -> Any:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


def request_with(headers: list[tuple[bytes, bytes]], *messages: Message) -> Request:
    if not messages:
        messages = ({"type": "http.request", "body": BODY, "more_body": False},)
    return Request({"type": "http", "headers": headers}, receiving(*messages))


JSON = (b"content-type", b"application/json")


async def outcome(read: Any, request: Request) -> Any:
    try:
        return await read(request, Body)
    except errors.AppError as exc:
        return type(exc), exc.status, exc.detail


@pytest.mark.parametrize(
    "headers",
    [
        [JSON],
        [],
        [(b"content-type", b"application/problem+json; charset=utf-8")],
        [(b"content-type", b"  Application/JSON ;x=1")],
        [(b"content-type", b"\xa0application/json\x85")],  # latin-1 spaces str.strip() takes
        [(b"content-type", b"application/jsonx")],
        [(b"content-type", b"text/plain"), JSON],  # the first value counts
        [JSON, (b"content-type", b"text/plain")],
        [JSON, (b"content-encoding", b"gzip")],
        [JSON, (b"content-encoding", b" Identity ")],
        [JSON, (b"content-encoding", b"identity"), (b"content-encoding", b"gzip")],
        [JSON, (b"content-encoding", b"gzip"), (b"content-encoding", b"identity")],
        [(b"content-encoding", b"gzip"), (b"content-type", b"text/plain")],  # 415 for the type
        [(b"content-encoding", b"")],
        [JSON, (b"content-encoding", b"")],
        [(b"content-type", "application/json\u00c0".lower().encode("latin-1"))],
    ],
)
async def test_read_json_answers_as_it_did_with_starlettes_request(
    headers: list[tuple[bytes, bytes]],
) -> None:
    ours = await outcome(read_json, request_with(headers))
    assert ours == await outcome(reference, request_with(headers))


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.request", "body": BODY}],
        [
            {"type": "http.request", "body": b'{"a"', "more_body": True},
            {"type": "http.request", "body": b":1}", "more_body": False},
        ],
        [{"type": "http.request", "more_body": False}],
        [{"type": "http.request", "body": b'{"a":', "more_body": True}, {"type": "other"}],
    ],
)
async def test_without_the_body_limits_bytes_request_body_is_starlettes_body(
    messages: list[Message],
) -> None:
    ours, theirs = request_with([JSON], *messages), request_with([JSON], *messages)
    try:
        expected: Any = await theirs.body()
    except ClientDisconnect:
        expected = ClientDisconnect
    try:
        got: Any = await request_body(ours)
    except ClientDisconnect:
        got = ClientDisconnect
    assert got == expected


async def test_the_body_limits_bytes_are_taken_from_the_scope_without_a_receive() -> None:
    async def receive() -> Message:
        raise AssertionError("the body was in the scope")

    request = Request({"type": "http", "headers": [JSON], REQUEST_BODY: b'{"a":2}'}, receive)
    assert await request_body(request) == b'{"a":2}'
    assert await read_json(request, Body) == Body(a=2)
    # An empty body is a body too: read as one, not looked for again.
    empty = Request({"type": "http", "headers": [JSON], REQUEST_BODY: b""}, receive)
    assert await request_body(empty) == b""
