from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware import BadContentLength, BodyLimitMiddleware, PayloadTooLarge

LIMIT = 1000


def on_error(exc: Exception) -> ASGIApp:
    if isinstance(exc, PayloadTooLarge):
        return JSONResponse({"limit": exc.limit}, status_code=413)
    assert isinstance(exc, BadContentLength)
    return JSONResponse({"error": "bad length"}, status_code=400)


class Recorder:
    """A Starlette app that hashes the body it reads and counts its calls."""

    def __init__(self, *, handle_too_large: bool = True) -> None:
        self.calls = 0

        async def upload(request: Request) -> Response:
            self.calls += 1
            body = await request.body()
            return JSONResponse({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

        handlers = {PayloadTooLarge: self.too_large} if handle_too_large else {}
        self.app = Starlette(
            routes=[Route("/upload", upload, methods=["POST"])],
            exception_handlers=handlers,
        )

    @staticmethod
    async def too_large(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PayloadTooLarge)
        return JSONResponse({"limit": exc.limit, "from": "app"}, status_code=413)


def client(app: ASGIApp) -> httpx.AsyncClient:
    middleware = BodyLimitMiddleware(app, max_bytes=LIMIT, on_error=on_error)
    transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
async def test_a_body_within_the_limit_passes_intact(size: int) -> None:
    recorder = Recorder()
    body = os.urandom(size)
    async with client(recorder.app) as http:
        response = await http.post("/upload", content=body)
    assert response.status_code == 200
    assert response.json() == {"size": size, "sha256": hashlib.sha256(body).hexdigest()}


async def test_a_chunked_body_within_the_limit_passes_intact() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.post("/upload", content=chunks(10, LIMIT // 10))
    assert response.json()["size"] == LIMIT


async def test_too_large_content_length_is_refused_without_calling_the_app() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.post("/upload", content=b"x" * (LIMIT + 1))
    assert (response.status_code, response.json()) == (413, {"limit": LIMIT})
    assert recorder.calls == 0


@pytest.mark.parametrize("value", ["abc", "-1", "+5", "1_0", " 5", "5.0", "١٢"])
async def test_invalid_content_length_is_refused_without_calling_the_app(value: str) -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.post("/upload", headers={b"content-length": value.encode()})
    assert response.status_code == 400
    assert recorder.calls == 0


async def test_conflicting_content_lengths_are_refused() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("app called")

    scope = http_scope([(b"content-length", b"5"), (b"content-length", b"6")])
    sent = await call(BodyLimitMiddleware(app, max_bytes=LIMIT, on_error=on_error), scope, [b""])
    assert sent[0]["status"] == 400


async def test_a_chunked_body_past_the_limit_is_rendered_by_the_apps_handler() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.post("/upload", content=chunks(20, 100))
    assert response.status_code == 413
    assert response.json() == {"limit": LIMIT, "from": "app"}


async def test_a_chunked_body_past_the_limit_escaping_the_app_is_answered_here() -> None:
    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("the whole body was read")

    async with client(reader) as http:
        response = await http.post("/upload", content=chunks(20, 100))
    assert (response.status_code, response.json()) == (413, {"limit": LIMIT})


def http_scope(headers: list[tuple[bytes, bytes]], http_version: str = "1.1") -> Scope:
    return {"type": "http", "method": "POST", "path": "/", "http_version": http_version,
            "headers": headers}  # fmt: skip


async def call(app: ASGIApp, scope: Scope, bodies: list[bytes]) -> list[Message]:
    messages = [
        {"type": "http.request", "body": body, "more_body": index < len(bodies) - 1}
        for index, body in enumerate(bodies)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def drain(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_a_lying_content_length_is_caught_while_reading() -> None:
    app = BodyLimitMiddleware(drain, max_bytes=LIMIT, on_error=on_error)
    scope = http_scope([(b"content-length", b"10")])
    sent = await call(app, scope, [b"x" * 600, b"x" * 600])
    assert sent[0]["status"] == 413


async def test_http2_bodies_without_content_length_are_counted() -> None:
    app = BodyLimitMiddleware(drain, max_bytes=LIMIT, on_error=on_error)
    sent = await call(app, http_scope([], http_version="2"), [b"x" * 600, b"x" * 600])
    assert sent[0]["status"] == 413


async def test_past_the_limit_after_the_response_started_propagates() -> None:
    async def eager(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    app = BodyLimitMiddleware(eager, max_bytes=LIMIT, on_error=on_error)
    scope = http_scope([(b"transfer-encoding", b"chunked")])
    with pytest.raises(PayloadTooLarge):
        await call(app, scope, [b"x" * 600, b"x" * 600])


@pytest.mark.parametrize("max_bytes", [-1, True, 1.5])
def test_rejects_a_bad_limit(max_bytes: object) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BodyLimitMiddleware(Starlette(), max_bytes=max_bytes, on_error=on_error)  # type: ignore[arg-type]
