from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
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
    duration = line.pop("duration_ms")
    assert isinstance(duration, float)
    assert 0 <= duration < 10_000
    assert line == {
        "event": "http_request",
        "request_id": response.headers["x-request-id"],
        "method": "GET",
        "path": "/items/7",
        "route": "/items/{id}",
        "status": 200,
        "bytes": len(response.content),
        "client_ip": "127.0.0.1",
        "user_agent": "probe/2",
        "error": None,
    }


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
