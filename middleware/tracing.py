"""The server span of each request, when tracing is on (the stack gives the edge no tracing
job otherwise, so tracing off costs a request no OpenTelemetry call)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Scope

from middleware.edge import EdgeMiddleware
from middleware.request_id import SPAN_ID_FIELD, TRACE_ID_FIELD, structlog_var
from middleware.trace_context import TRACESTATE
from middleware.types import RouteResolver

_W3C = TraceContextTextMapPropagator()


class Tracing:
    """A SERVER span per HTTP request, the child of the caller's span when a valid
    ``traceparent`` came (the request id job checked it: ``scope["traceparent"]``), with its
    ``tracestate``. The edge (middleware/edge.py) runs the app inside ``start``'s span, so the
    SQL, Redis and outbound spans become its children; ``opened`` puts its ids in
    ``scope["trace_id"]`` and ``scope["span_id"]`` (for the access line) and in the log lines'
    context, ``closed`` names it.

    Named ``{method} {route template}`` (never the raw path), with OpenTelemetry's HTTP
    server attributes; a 5xx or an exception marks it as an error.
    """

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._trace_var = structlog_var(TRACE_ID_FIELD)
        self._span_var = structlog_var(SPAN_ID_FIELD)

    def start(self, scope: Scope) -> AbstractContextManager[Span]:
        """The request's span, current while the context manager is entered."""
        parent = None
        incoming = scope.get("traceparent")
        if incoming is not None:
            carrier = {"traceparent": f"00-{incoming.trace_id}-{incoming.parent_id}-"}
            carrier["traceparent"] += f"{incoming.flags:02x}"
            states = [value for name, value in scope["headers"] if name == TRACESTATE]
            if states:
                carrier["tracestate"] = b",".join(states).decode("latin-1")
            parent = _W3C.extract(carrier)
        attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
        return self.tracer.start_as_current_span(
            scope["method"], context=parent, kind=SpanKind.SERVER, attributes=attributes
        )

    def opened(self, scope: Scope, span: Span) -> None:
        ids = span.get_span_context()
        if ids.is_valid:
            scope["trace_id"] = trace_id = trace.format_trace_id(ids.trace_id)
            scope["span_id"] = span_id = trace.format_span_id(ids.span_id)
            self._trace_var.set(trace_id)
            self._span_var.set(span_id)

    def closed(self, scope: Scope, span: Span, route: str, status: int) -> None:
        """Before the span ends: its name and route, and its status (0: no answer started)."""
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
        if status:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))


class TracingMiddleware(EdgeMiddleware):
    """The server span alone as a layer (the server's stack runs it in its one edge layer)."""

    def __init__(
        self, app: ASGIApp, *, tracer: Tracer, resolve_route: RouteResolver | None = None
    ) -> None:
        super().__init__(app, tracing=Tracing(tracer), resolve_route=resolve_route)
