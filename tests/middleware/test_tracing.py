"""The server span layer (on only with tracing), with a tracer provider of the test's own
exporting to memory: the caller's trace continued, the span named by the route template, its
ids in the scope and the log context, errors marked, the caller's sampling decision kept."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.contextvars import get_contextvars

from middleware import RequestIdMiddleware
from middleware.tracing import TracingMiddleware
from tests.fixtures.support import task_per_request

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"


async def item(request: Request) -> Response:
    context = get_contextvars()
    return JSONResponse(
        {
            "scope": [request.scope["trace_id"], request.scope["span_id"]],
            "context": [context.get("trace.id"), context.get("span.id")],
        }
    )


async def broken(request: Request) -> Response:
    return Response(status_code=503)


def traced_client(exported: InMemorySpanExporter) -> httpx.AsyncClient:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    app = Starlette(routes=[Route("/items/{id}", item), Route("/broken", broken)])
    stack = RequestIdMiddleware(TracingMiddleware(app, tracer=provider.get_tracer("test")))
    transport = httpx.ASGITransport(app=task_per_request(stack))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_the_callers_trace_is_continued_under_its_span() -> None:
    exported = InMemorySpanExporter()
    headers = {"traceparent": f"00-{TRACE}-{CALLER}-01", "tracestate": "vendor=opaque"}
    async with traced_client(exported) as http:
        body: dict[str, Any] = (await http.get("/items/7", headers=headers)).json()
    (span,) = exported.get_finished_spans()
    ids = span.get_span_context()
    assert ids is not None
    assert (span.name, span.kind) == ("GET /items/{id}", SpanKind.SERVER)
    assert format(ids.trace_id, "032x") == TRACE
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == CALLER
    assert ids.trace_state.get("vendor") == "opaque"
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "http.route": "/items/{id}",
        "http.response.status_code": 200,
    }
    # The access log (outside) and the log lines (inside) name the server span, not the caller's.
    own = [TRACE, format(ids.span_id, "016x")]
    assert body == {"scope": own, "context": own}


async def test_a_request_without_traceparent_starts_a_trace_and_a_5xx_is_an_error() -> None:
    exported = InMemorySpanExporter()
    async with traced_client(exported) as http:
        assert (await http.get("/broken")).status_code == 503
    (span,) = exported.get_finished_spans()
    assert span.parent is None
    assert span.name == "GET /broken"
    assert span.status.status_code == StatusCode.ERROR


async def test_the_callers_decision_not_to_sample_is_kept_and_its_ids_still_logged() -> None:
    exported = InMemorySpanExporter()
    async with traced_client(exported) as http:
        response = await http.get("/items/1", headers={"traceparent": f"00-{TRACE}-{CALLER}-00"})
    assert exported.get_finished_spans() == ()
    trace_id, span_id = response.json()["context"]
    assert trace_id == TRACE
    assert len(span_id) == 16
