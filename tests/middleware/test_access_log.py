from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import get_contextvars

from middleware import AccessLogMiddleware, RequestIdMiddleware


class CaptureLogger:
    """Records lines the way structlog's merge_contextvars would see them."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append({**get_contextvars(), **kw, "event": event})


async def get_item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


def client(app: ASGIApp, logger: CaptureLogger, *, enabled: bool = True) -> httpx.AsyncClient:
    stack = RequestIdMiddleware(AccessLogMiddleware(app, logger=logger, enabled=enabled))
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/items/{id}", get_item), Route("/boom", boom)])


async def test_one_line_per_request_with_every_field() -> None:
    logger = CaptureLogger()
    async with client(starlette_app(), logger) as http:
        response = await http.get("/items/7", headers={"user-agent": "probe/2"})
    [line] = logger.lines
    duration = line.pop("duration_ns")
    assert isinstance(duration, int)
    assert 0 < duration < 10_000_000_000
    assert line == {
        "event": "http_request",
        "http.request.id": response.headers["x-request-id"],  # the context's
        "request_id": response.headers["x-request-id"],
        "method": "GET",
        "path": "/items/7",
        "route": "/items/{id}",
        "status": 200,
        "bytes": len(response.content),
        "client_ip": "127.0.0.1",
        "user_agent": "probe/2",
        "error": None,
        "trace_id": None,
        "span_id": None,
    }


async def test_a_valid_traceparent_gives_the_line_its_trace_and_span_ids() -> None:
    logger = CaptureLogger()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with client(starlette_app(), logger) as http:
        await http.get("/items/7", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        await http.get("/items/8", headers={"traceparent": f"00-{'0' * 32}-{parent_id}-01"})
        # Two traceparent headers: the specification says to take neither.
        valid = f"00-{trace_id}-{parent_id}-01"
        await http.get("/items/9", headers=[("traceparent", valid), ("traceparent", valid)])
    traced, invalid, repeated = logger.lines
    assert (traced["trace_id"], traced["span_id"]) == (trace_id, parent_id)
    assert (traced["trace.id"], traced["span.id"]) == (trace_id, parent_id)  # the context's
    assert (invalid["trace_id"], invalid["span_id"]) == (None, None)
    assert (repeated["trace_id"], repeated["span_id"]) == (None, None)


async def test_a_file_the_server_sends_itself_counts_with_its_size(tmp_path: Path) -> None:
    # ASGI's pathsend, which Starlette's FileResponse uses when the server offers it (granian
    # does): no body message passes the counting wrapper, and the line said 0 bytes.
    asset = tmp_path / "bundle.js"
    asset.write_bytes(b"x" * 12345)

    async def file_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(asset)})

    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    logger = CaptureLogger()
    scope = {"type": "http", "method": "GET", "path": "/bundle.js", "headers": []}
    await AccessLogMiddleware(file_app, logger=logger)(scope, nothing, record)
    [line] = logger.lines
    assert (line["status"], line["bytes"]) == (200, 12345)
    assert [message["type"] for message in sent][1:] == ["http.response.pathsend"]


async def test_query_string_is_never_logged() -> None:
    logger = CaptureLogger()
    async with client(starlette_app(), logger) as http:
        await http.get("/items/7", params={"api_token": "s3cr3t-value", "page": "2"})
    [line] = logger.lines
    assert line["path"] == "/items/7"
    assert "s3cr3t-value" not in repr(line)
    assert "api_token" not in repr(line)


async def test_unmatched_route_is_logged_as_such() -> None:
    logger = CaptureLogger()
    async with client(starlette_app(), logger) as http:
        await http.get("/no/such/thing")
    [line] = logger.lines
    assert (line["status"], line["route"], line["path"]) == (404, "unmatched", "/no/such/thing")


async def test_a_crash_answered_by_starlette_is_logged_as_500() -> None:
    logger = CaptureLogger()
    async with client(starlette_app(), logger) as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    [line] = logger.lines
    assert (line["status"], line["route"], line["error"]) == (500, "/boom", "RuntimeError")
    assert line["request_id"] == response.headers["x-request-id"]


async def test_a_crash_before_any_response_is_logged_and_propagates() -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("nope")

    logger = CaptureLogger()
    app = AccessLogMiddleware(crashing, logger=logger)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with pytest.raises(KeyError):
            await http.get("/x")
    [line] = logger.lines
    assert (line["status"], line["error"], line["bytes"]) == (500, "KeyError", 0)


async def test_streamed_bytes_are_counted() -> None:
    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"defg"})

    logger = CaptureLogger()
    async with client(streaming, logger) as http:
        response = await http.post("/upload")
    assert response.content == b"abcdefg"
    [line] = logger.lines
    assert (line["status"], line["bytes"], line["route"]) == (201, 7, "unmatched")


async def test_disabled_logs_nothing() -> None:
    logger = CaptureLogger()
    async with client(starlette_app(), logger, enabled=False) as http:
        response = await http.get("/items/1")
    assert response.status_code == 200
    assert logger.lines == []


def test_rejects_a_logger_without_info() -> None:
    with pytest.raises(TypeError, match="info"):
        AccessLogMiddleware(Starlette(), logger=object())  # type: ignore[arg-type]
