from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import MethodType
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import get_contextvars

from middleware import (
    BodyLimitMiddleware,
    BodyTimeout,
    HttpMetrics,
    PayloadTooLarge,
    ProxyHeadersMiddleware,
    build_stack,
)
from middleware.access_log import AccessLog
from middleware.body_limit import BodyTiming
from middleware.boundary import BoundaryMiddleware
from middleware.compression import CompressionMiddleware
from middleware.cors import CorsMiddleware
from middleware.deadline import DeadlineMiddleware
from middleware.edge import EdgeMiddleware
from middleware.in_flight import InFlightLimitMiddleware
from middleware.request_id import RequestIds
from middleware.security_headers import SecurityHeaders
from middleware.tracing import Tracing
from middleware.types import bound
from tests.fixtures.support import task_per_request

DURATION_COUNT = "http_server_request_duration_seconds_count"
ACTIVE = "http_server_active_requests"


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


def layer_objects(stack: Any) -> list[Any]:
    """The layers, outermost first; each holds the next as its bound ``__call__``."""
    layers = []
    while not isinstance(stack, Starlette):
        layers.append(stack)
        stack = stack.app.__self__
    return layers


def layers_of(stack: Any) -> list[type]:
    return [type(layer) for layer in layer_objects(stack)]


def test_layers_are_in_order() -> None:
    harness = Harness()
    assert layers_of(harness.stack) == [EdgeMiddleware, BodyLimitMiddleware]
    edge: Any = harness.stack
    assert isinstance(edge.request_ids, RequestIds)
    assert isinstance(edge.access_log, AccessLog)
    assert edge.access_log.logger is harness.logger
    assert edge.tracing is None  # no tracer given: no OpenTelemetry call on a request
    assert isinstance(edge.metrics, HttpMetrics)
    assert isinstance(edge.security, SecurityHeaders)


def test_every_layer_on_is_in_order() -> None:
    provider = TracerProvider()
    stack = build_stack(
        Starlette(), logger=CaptureLogger(), access_log=True,
        metrics=HttpMetrics(registry=CollectorRegistry()), hsts=False, max_body_bytes=100,
        on_error=on_error, trusted_proxies=("10.0.0.0/8",), cors_origins=("https://a.example",),
        max_in_flight=1, compress_from=1024, request_timeout=5,
        tracer=provider.get_tracer("test"),
    )  # fmt: skip
    assert layers_of(stack) == [
        ProxyHeadersMiddleware,
        EdgeMiddleware,
        CompressionMiddleware,
        CorsMiddleware,
        BodyLimitMiddleware,
        InFlightLimitMiddleware,
    ]
    assert isinstance(layer_objects(stack)[1].tracing, Tracing)
    # The deadline is the cap's job then: started as the request is admitted.
    assert layer_objects(stack)[-1].deadline == 5.0
    # Each layer holds the next as a bound method: a call the interpreter specializes.
    assert all(isinstance(layer.app, MethodType) for layer in layer_objects(stack))


async def _rescue(
    exc: Exception, scope: Scope, receive: Receive, send: Send, started: bool
) -> None:
    raise exc


def test_the_in_flight_cap_runs_the_error_boundary() -> None:
    stack: Any = build_stack(
        Starlette(), logger=CaptureLogger(), access_log=False,
        metrics=HttpMetrics(registry=CollectorRegistry()), hsts=False, max_body_bytes=100,
        on_error=on_error, max_in_flight=4, request_timeout=5, rescue=_rescue,
    )  # fmt: skip
    assert layers_of(stack) == [EdgeMiddleware, BodyLimitMiddleware, InFlightLimitMiddleware]
    assert layer_objects(stack)[-1].rescue is _rescue


def test_without_an_in_flight_cap_the_error_boundary_is_the_innermost_layer() -> None:
    stack: Any = build_stack(
        Starlette(), logger=CaptureLogger(), access_log=False,
        metrics=HttpMetrics(registry=CollectorRegistry()), hsts=False, max_body_bytes=100,
        on_error=on_error, request_timeout=5, rescue=_rescue,
    )  # fmt: skip
    assert layers_of(stack)[-3:] == [BodyLimitMiddleware, DeadlineMiddleware, BoundaryMiddleware]
    assert layer_objects(stack)[-1].rescue is _rescue


def test_without_an_in_flight_cap_the_deadline_is_a_layer_of_its_own() -> None:
    stack: Any = build_stack(
        Starlette(), logger=CaptureLogger(), access_log=False,
        metrics=HttpMetrics(registry=CollectorRegistry()), hsts=False, max_body_bytes=100,
        on_error=on_error, request_timeout=5,
    )  # fmt: skip
    assert layers_of(stack)[-2:] == [BodyLimitMiddleware, DeadlineMiddleware]


def test_access_log_is_left_out_when_disabled() -> None:
    stack: Any = Harness(access_log=False).stack
    assert stack.access_log is None
    assert isinstance(stack.metrics, HttpMetrics)


def test_the_stack_refuses_anything_but_http_metrics() -> None:
    with pytest.raises(TypeError):
        build_stack(
            Starlette(), logger=CaptureLogger(), access_log=True,
            metrics=object(),  # type: ignore[arg-type]
            hsts=False, max_body_bytes=100, on_error=on_error,
        )  # fmt: skip


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
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    [line] = harness.logger.lines
    assert (line["status"], line["request_id"]) == (500, response.headers["x-request-id"])
    assert (line["route"], line["error"]) == ("/boom", "RuntimeError")
    assert line["http.request.id"] == line["request_id"]  # the context's, in every log line
    assert harness.count("GET", "/boom", 500) == 1
    # Counted once, and no longer in flight.
    assert harness.registry.get_sample_value(ACTIVE, {"http_request_method": "GET"}) == 0


async def test_a_crash_before_any_answer_is_logged_counted_and_propagates() -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("nope")

    logger = CaptureLogger()
    registry = CollectorRegistry()
    stack = build_stack(
        crashing, logger=logger, access_log=True, metrics=HttpMetrics(registry=registry),
        hsts=False, max_body_bytes=100, on_error=on_error,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=stack)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with pytest.raises(KeyError):
            await http.get("/x")
    [line] = logger.lines
    assert (line["status"], line["error"], line["bytes"]) == (500, "KeyError", 0)
    assert isinstance(line["request_id"], str)
    labels = {"http_request_method": "GET", "http_route": "unmatched"}
    count = registry.get_sample_value(
        DURATION_COUNT, {**labels, "http_response_status_code": "500"}
    )
    assert count == 1
    assert registry.get_sample_value(ACTIVE, {"http_request_method": "GET"}) == 0


async def test_a_cancelled_request_leaves_the_gauge_uncounted_and_unlogged() -> None:
    # The client left: the request's task is cancelled. Neither an answer to count nor a line.
    started = asyncio.Event()

    async def waiting(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.Event().wait()

    logger = CaptureLogger()
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry=registry)
    stack = build_stack(
        waiting, logger=logger, access_log=True, metrics=metrics,
        hsts=False, max_body_bytes=100, on_error=on_error,
    )  # fmt: skip
    scope = {"type": "http", "method": "GET", "path": "/x", "http_version": "1.1",
             "headers": [], "query_string": b"", "root_path": ""}  # fmt: skip

    async def nothing() -> Message:
        raise AssertionError("unread")

    async def ignore(message: Message) -> None:
        raise AssertionError("nothing is sent")

    task = asyncio.ensure_future(stack(scope, nothing, ignore))
    await started.wait()
    assert registry.get_sample_value(ACTIVE, {"http_request_method": "GET"}) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry.get_sample_value(ACTIVE, {"http_request_method": "GET"}) == 0
    assert metrics.series == {}
    assert logger.lines == []


async def test_a_compressed_answer_is_logged_with_its_wire_bytes_and_secured() -> None:
    # Compression inside the edge: the line counts the bytes sent, and the security headers
    # and the request id are on the compressed answer.
    async def big(request: Request) -> Response:
        return JSONResponse({"text": "a" * 4000})

    logger = CaptureLogger()
    registry = CollectorRegistry()
    stack = build_stack(
        Starlette(routes=[Route("/big", big)]), logger=logger, access_log=True,
        metrics=HttpMetrics(registry=registry), hsts=False, max_body_bytes=100,
        on_error=on_error, compress_from=1024,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=stack)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get(
            "/big", headers={"accept-encoding": "gzip", "authorization": "Bearer t"}
        )
    assert response.headers["content-encoding"] == "gzip"
    wire = int(response.headers["content-length"])
    assert wire < 4000
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    [line] = logger.lines
    assert (line["status"], line["bytes"]) == (200, wire)
    assert line["request_id"] == response.headers["x-request-id"]


async def test_with_tracing_the_access_line_names_the_server_span() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    harness = Harness()
    harness.stack = build_stack(
        harness.app, logger=harness.logger, access_log=True,
        metrics=HttpMetrics(registry=harness.registry), hsts=False, max_body_bytes=100,
        on_error=on_error, tracer=provider.get_tracer("test"),
    )  # fmt: skip
    async with harness.client() as http:
        response = await http.post("/upload", content=b"x" * 101)
    assert response.status_code == 413
    (span,) = exported.get_finished_spans()
    ids = span.get_span_context()
    assert ids is not None
    [line] = harness.logger.lines
    assert (line["trace_id"], line["span_id"]) == (
        format(ids.trace_id, "032x"),
        format(ids.span_id, "016x"),
    )
    assert line["request_id"] == response.headers["x-request-id"]
    assert (span.name, dict(span.attributes or {})["http.response.status_code"]) == (
        "POST unmatched",
        413,
    )
    assert harness.count("POST", "unmatched", 413) == 1


async def test_a_refused_body_is_logged_counted_and_identified() -> None:
    harness = Harness()
    async with harness.client() as http:
        response = await http.post("/upload", content=b"x" * 101)
    assert (response.status_code, response.json()) == (413, {"type": "PayloadTooLarge"})
    assert "x-request-id" in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
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
    layers = layers_of(stack)
    assert layers[-2:] == [BodyLimitMiddleware, InFlightLimitMiddleware]
    assert layer_objects(stack)[-1].deadline == 5.0  # it starts inside the cap, once admitted


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


def test_bound_gives_an_objects_call_and_leaves_functions_and_methods() -> None:
    layer = DeadlineMiddleware(Starlette(), seconds=1)
    held = bound(layer)
    assert isinstance(held, MethodType)
    assert held.__self__ is layer
    assert held.__func__ is DeadlineMiddleware.__call__
    assert bound(held) is held

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    assert bound(plain) is plain
