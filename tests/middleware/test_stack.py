from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message
from structlog.contextvars import get_contextvars

from middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    BodyTimeout,
    HttpMetrics,
    MetricsMiddleware,
    PayloadTooLarge,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    build_stack,
)
from middleware.body_limit import BodyTiming
from middleware.deadline import DeadlineMiddleware
from middleware.in_flight import InFlightLimitMiddleware
from tests.fixtures.support import task_per_request

DURATION_COUNT = "http_server_request_duration_seconds_count"


class CaptureLogger:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append({**get_contextvars(), **kw, "event": event})


def on_error(exc: Exception) -> ASGIApp:
    status = 413 if isinstance(exc, PayloadTooLarge) else 400
    return JSONResponse({"type": type(exc).__name__}, status_code=status)


async def get_item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def upload(request: Request) -> Response:
    return JSONResponse({"size": len(await request.body())})


class Harness:
    def __init__(self, *, access_log: bool = True) -> None:
        self.events: list[str] = []
        self.logger = CaptureLogger()
        self.registry = CollectorRegistry()
        self.app = Starlette(
            routes=[
                Route("/items/{id}", get_item),
                Route("/boom", boom),
                Route("/upload", upload, methods=["POST"]),
            ],
            lifespan=self.lifespan,
        )
        self.stack = build_stack(
            self.app,
            logger=self.logger,
            access_log=access_log,
            metrics=HttpMetrics(registry=self.registry),
            hsts=True,
            max_body_bytes=100,
            on_error=on_error,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.events.append("startup")
        yield
        self.events.append("shutdown")

    def client(self) -> httpx.AsyncClient:
        # A task per request, as granian serves it.
        transport = httpx.ASGITransport(
            app=task_per_request(self.stack), raise_app_exceptions=False
        )
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    def count(self, method: str, route: str, status: int) -> float | None:
        labels = {
            "http_request_method": method,
            "http_route": route,
            "http_response_status_code": str(status),
        }
        return self.registry.get_sample_value(DURATION_COUNT, labels)


def test_layers_are_in_order() -> None:
    layers = []
    app: Any = Harness().stack
    while not isinstance(app, Starlette):
        layers.append(type(app))
        app = app.app
    assert layers == [
        RequestIdMiddleware,
        AccessLogMiddleware,
        MetricsMiddleware,
        SecurityHeadersMiddleware,
        BodyLimitMiddleware,
    ]


def test_access_log_is_left_out_when_disabled() -> None:
    stack: Any = Harness(access_log=False).stack
    assert isinstance(stack.app, MetricsMiddleware)


async def test_a_request_gets_id_log_metrics_and_headers() -> None:
    harness = Harness()
    async with harness.client() as http:
        response = await http.get("/items/9?secret=1")
    request_id = response.headers["x-request-id"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    [line] = harness.logger.lines
    assert (line["request_id"], line["route"], line["status"]) == (request_id, "/items/{id}", 200)
    assert harness.count("GET", "/items/{id}", 200) == 1


async def test_a_500_from_starlette_passes_through_every_layer() -> None:
    harness = Harness()
    async with harness.client() as http:
        response = await http.get("/boom", headers={"authorization": "Bearer t"})
    assert response.status_code == 500
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["cache-control"] == "no-store"
    [line] = harness.logger.lines
    assert (line["status"], line["request_id"]) == (500, response.headers["x-request-id"])
    assert harness.count("GET", "/boom", 500) == 1


async def test_a_refused_body_is_logged_counted_and_identified() -> None:
    harness = Harness()
    async with harness.client() as http:
        response = await http.post("/upload", content=b"x" * 101)
    assert (response.status_code, response.json()) == (413, {"type": "PayloadTooLarge"})
    assert "x-request-id" in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    [line] = harness.logger.lines
    assert (line["status"], line["request_id"]) == (413, response.headers["x-request-id"])
    # Refused before the router ran, so no route was matched.
    assert harness.count("POST", "unmatched", 413) == 1


async def test_lifespan_passes_through() -> None:
    harness = Harness()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await harness.stack({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert harness.events == ["startup", "shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("path", ["/items/1", "/nowhere"])
async def test_no_request_id_leaks_out_of_the_stack(path: str) -> None:
    async with Harness().client() as http:
        await http.get(path)
    assert "request_id" not in get_contextvars()


def test_the_body_is_read_outside_the_in_flight_cap_and_the_deadline() -> None:
    stack: Any = build_stack(
        Starlette(), logger=CaptureLogger(), access_log=False,
        metrics=HttpMetrics(registry=CollectorRegistry()), hsts=False, max_body_bytes=100,
        on_error=on_error, max_in_flight=1, request_timeout=5,
    )  # fmt: skip
    layers = []
    while not isinstance(stack, Starlette):
        layers.append(type(stack))
        stack = stack.app
    assert layers[-3:] == [BodyLimitMiddleware, InFlightLimitMiddleware, DeadlineMiddleware]


async def test_a_body_that_never_comes_holds_no_in_flight_slot() -> None:
    # One slot in flight; a client announces a body and sends nothing. Another request is
    # still admitted, and the silent one is answered 408 once its time is up, logged and
    # counted like any other answer.
    def render(exc: Exception) -> ASGIApp:
        status = 408 if isinstance(exc, BodyTimeout) else 503
        return JSONResponse({"type": type(exc).__name__}, status_code=status)

    harness = Harness()
    harness.stack = build_stack(
        harness.app, logger=harness.logger, access_log=True,
        metrics=HttpMetrics(registry=harness.registry), hsts=False, max_body_bytes=100,
        on_error=render, max_in_flight=1, body_timing=BodyTiming(timeout=0.5),
    )  # fmt: skip
    silent_sent: list[Message] = []

    async def silent_receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def record(message: Message) -> None:
        silent_sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/upload", "http_version": "1.1",
             "headers": [(b"content-length", b"50")], "query_string": b"",
             "client": ("10.1.1.1", 9), "server": ("test", 80), "scheme": "http",
             "root_path": ""}  # fmt: skip
    silent = asyncio.ensure_future(harness.stack(scope, silent_receive, record))
    async with harness.client() as http:
        await asyncio.sleep(0.05)
        ok = await http.post("/upload", content=b"x" * 10)
        assert (ok.status_code, ok.json()) == (200, {"size": 10})
        await asyncio.wait_for(silent, 5)
    assert silent_sent[0]["status"] == 408
    # Refused before routing, and this stack has no resolve_route: the route is unmatched.
    assert harness.count("POST", "unmatched", 408) == 1
    assert [line["status"] for line in harness.logger.lines] == [200, 408]
