from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware import (
    BadContentLength,
    BodyLimitMiddleware,
    BodyReadersBusy,
    BodyTimeout,
    PayloadTooLarge,
)
from middleware.body_limit import BodyTiming
from middleware.types import REQUEST_BODY

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


async def test_the_whole_body_is_left_in_the_scope_as_receive_gives_it() -> None:
    seen: list[tuple[object, bytes]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append((scope.get(REQUEST_BODY), message.get("body", b"")))
        await Response(b"")(scope, receive, send)

    async with client(app) as http:
        await http.post("/upload", content=chunks(10, LIMIT // 10))  # chunked: read whole
        await http.post("/upload", content=b"")  # Content-Length 0: nothing read
        await http.get("/upload")
    assert seen == [(b"x" * LIMIT, b"x" * LIMIT), (None, b""), (None, b"")]


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


async def test_a_streamed_body_past_the_limit_is_refused_without_calling_the_app() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.post("/upload", content=chunks(20, 100))
    assert (response.status_code, response.json()) == (413, {"limit": LIMIT})
    assert recorder.calls == 0


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


@pytest.mark.parametrize("max_bytes", [-1, True, 1.5])
def test_rejects_a_bad_limit(max_bytes: object) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BodyLimitMiddleware(Starlette(), max_bytes=max_bytes, on_error=on_error)  # type: ignore[arg-type]


# The time limit and the readers' budget. A fake receive hands out chunks on a schedule.
def timing_error(exc: Exception) -> ASGIApp:
    if isinstance(exc, BodyTimeout):
        return JSONResponse({"error": "timeout"}, status_code=408)
    if isinstance(exc, BodyReadersBusy):
        return JSONResponse({"error": "busy"}, status_code=503)
    return on_error(exc)


def timed(app: ASGIApp, **timing: Any) -> BodyLimitMiddleware:
    return BodyLimitMiddleware(
        app, max_bytes=LIMIT, on_error=timing_error, timing=BodyTiming(**timing)
    )


async def call_slowly(
    app: ASGIApp,
    schedule: list[tuple[float, bytes]],
    *,
    client: str = "127.0.0.1",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[Message]:
    """Each chunk after its delay; then, like a silent client, nothing until cancelled."""
    pending = list(schedule)
    sent: list[Message] = []

    async def receive() -> Message:
        if not pending:
            await asyncio.Event().wait()
        delay, body = pending.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = http_scope(headers or [(b"content-length", b"300")])
    scope["client"] = (client, 1234)
    scope["path"] = "/upload"
    await app(scope, receive, send)
    return sent


async def test_a_body_that_never_arrives_is_a_408_without_calling_the_app() -> None:
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.2)
    started = time.monotonic()
    sent = await call_slowly(app, [])
    assert sent[0]["status"] == 408
    assert 0.2 <= time.monotonic() - started < 2
    assert recorder.calls == 0
    assert (app.readers, app._per_client) == (0, {})


async def test_a_trickling_body_is_cut_off_at_the_minimum_rate() -> None:
    # 10 bytes every 0.1 s is 100 B/s, under the 1,000 B/s asked for: the allowance of
    # 0.3 s grows by 10 ms a chunk, and the chunks fall behind it.
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.3, min_rate=1000)
    sent = await call_slowly(app, [(0.1, b"x" * 10)] * 30)
    assert sent[0]["status"] == 408
    assert recorder.calls == 0


async def test_a_body_at_the_minimum_rate_earns_its_time() -> None:
    # 100 bytes every 0.1 s is 1,000 B/s: the whole second it takes is allowed, though the
    # first allowance is 0.3 s, because each chunk extends it by 0.1 s.
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.3, min_rate=1000)
    sent = await call_slowly(
        app, [(0.1, b"x" * 100)] * 9, headers=[(b"transfer-encoding", b"chunked")]
    )
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["size"] == 900


async def test_the_allowance_stops_growing_at_max_timeout() -> None:
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.2, min_rate=10, max_timeout=0.5)
    started = time.monotonic()
    sent = await call_slowly(app, [(0.1, b"x" * 10)] * 9, headers=[(b"content-length", b"90")])
    assert sent[0]["status"] == 408
    assert time.monotonic() - started < 0.9


async def test_empty_chunks_earn_no_time() -> None:
    # A client that keeps sending empty chunks adds no bytes: the allowance stays 0.3 s.
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.3, min_rate=1000)
    started = time.monotonic()
    sent = await call_slowly(
        app, [(0.05, b"")] * 20 + [(0, b"x")], headers=[(b"transfer-encoding", b"chunked")]
    )
    assert sent[0]["status"] == 408
    assert 0.3 <= time.monotonic() - started < 0.9
    assert recorder.calls == 0


async def test_the_deadline_counts_from_the_start_not_from_each_chunk() -> None:
    # 2 bytes every 0.1 s at min_rate 1,000: each chunk adds 2 ms, each wait is 0.1 s, so the
    # 0.25 s allowed from the start runs out during the third wait, though no wait is long.
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.25, min_rate=1000)
    started = time.monotonic()
    sent = await call_slowly(app, [(0.1, b"xx")] * 5, headers=[(b"transfer-encoding", b"chunked")])
    assert sent[0]["status"] == 408
    assert 0.25 <= time.monotonic() - started < 0.45
    assert recorder.calls == 0


async def test_a_body_in_two_messages_as_granian_sends_it() -> None:
    # The bytes with more_body, then an empty last message: one body for the app.
    recorder = Recorder()
    app = timed(recorder.app, timeout=0.3, min_rate=1000)
    sent = await call_slowly(app, [(0, b"x" * 44), (0.01, b"")])
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["size"] == 44


async def test_bodies_in_progress_have_a_budget_per_client_and_in_all() -> None:
    recorder = Recorder()
    app = timed(recorder.app, timeout=5, max_readers=3, max_readers_per_client=2)
    held = [
        asyncio.create_task(call_slowly(app, [], client=address))
        for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2")
    ]
    await asyncio.sleep(0.05)
    assert app.readers == 3
    same_client = await call_slowly(app, [(0, b"x")], client="10.0.0.1")
    other_client = await call_slowly(app, [(0, b"x")], client="10.0.0.3")
    assert same_client[0]["status"] == other_client[0]["status"] == 503
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    # A cancelled reader gives its place back.
    assert (app.readers, app._per_client) == (0, {})
    ok = await call_slowly(app, [(0, b"x" * 5)], client="10.0.0.1",
                           headers=[(b"content-length", b"5")])  # fmt: skip
    assert ok[0]["status"] == 200


async def test_a_client_leaving_mid_body_reaches_the_app_as_a_disconnect() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())

    messages: list[Message] = [
        {"type": "http.request", "body": b"x" * 10, "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError("nothing to send to a client that left")

    await timed(app)(http_scope([(b"content-length", b"300")]), receive, send)
    assert seen == [{"type": "http.disconnect"}]


async def test_after_the_body_the_app_reads_the_servers_own_receive() -> None:
    # An app that watches for a disconnect after the body must reach the server's receive.
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend([await receive(), await receive()])

    messages: list[Message] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        pass

    await timed(app)(http_scope([(b"transfer-encoding", b"chunked")]), receive, send)
    assert seen == [
        {"type": "http.request", "body": b"abc", "more_body": False},
        {"type": "http.disconnect"},
    ]


@pytest.mark.parametrize(
    "timing",
    [
        {"timeout": 0},
        {"timeout": True},
        {"min_rate": -1},
        {"timeout": 5, "max_timeout": 1},
        {"max_readers": 0},
        {"max_readers_per_client": 1.5},
    ],
)
def test_rejects_bad_timing(timing: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(timing)).split("_per")[0]):
        timed(Starlette(), **timing)
