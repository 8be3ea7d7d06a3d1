"""The server span of each request, when tracing is on (the stack leaves this layer out
otherwise, so tracing off costs a request nothing)."""

from __future__ import annotations

from collections.abc import Awaitable

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.request_id import SPAN_ID_FIELD, TRACE_ID_FIELD, structlog_var
from middleware.trace_context import TRACESTATE
from middleware.types import RouteResolver, route_template

_W3C = TraceContextTextMapPropagator()


class TracingMiddleware:
    """Start a SERVER span per HTTP request, the child of the caller's span when a valid
    ``traceparent`` came (RequestIdMiddleware, outside, checked it: ``scope["traceparent"]``),
    with its ``tracestate``. The span is the current one while the app runs, so the SQL,
    Redis and outbound spans become its children; its ids go to ``scope["trace_id"]`` and
    ``scope["span_id"]`` (the access log, outside) and to the log lines' context.

    Named ``{method} {route template}`` (never the raw path), with OpenTelemetry's HTTP
    server attributes; a 5xx or an exception marks it as an error.
    """

    def __init__(
        self, app: ASGIApp, *, tracer: Tracer, resolve_route: RouteResolver | None = None
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.resolve_route = resolve_route
        self._trace_var = structlog_var(TRACE_ID_FIELD)
        self._span_var = structlog_var(SPAN_ID_FIELD)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = None
        incoming = scope.get("traceparent")
        if incoming is not None:
            carrier = {"traceparent": f"00-{incoming.trace_id}-{incoming.parent_id}-"}
            carrier["traceparent"] += f"{incoming.flags:02x}"
            states = [value for name, value in scope["headers"] if name == TRACESTATE]
            if states:
                carrier["tracestate"] = b",".join(states).decode("latin-1")
            parent = _W3C.extract(carrier)
        method: str = scope["method"]
        status = 0

        def send_status(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        attributes = {"http.request.method": method, "url.path": scope["path"]}
        with self.tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            ids = span.get_span_context()
            if ids.is_valid:
                scope["trace_id"] = trace_id = trace.format_trace_id(ids.trace_id)
                scope["span_id"] = span_id = trace.format_span_id(ids.span_id)
                self._trace_var.set(trace_id)
                self._span_var.set(span_id)
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_template(scope, self.resolve_route)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
