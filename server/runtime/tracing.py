"""Tracing with OpenTelemetry, off unless an OTLP endpoint is configured.

Off, nothing here runs on a request: the tracing layer is left out of the middleware stack,
the pool hands out plain connections, coredis' instrumentation stays off, and outbound calls
only check ``_ACTIVE``. The W3C ``traceparent`` a request brings is still read (for the log
lines) by middleware/request_id.py, without OpenTelemetry.

On, each process (every granian worker, the webhook worker) exports its spans over OTLP/HTTP
through the SDK's BatchSpanProcessor: a queue the request only appends to, sent from the
processor's own thread. The tracer provider is also made OpenTelemetry's global one, which is
where coredis' own instrumentation (one client span per Redis command, without its arguments)
finds it.

Work that happens later because of a request (a webhook delivery of the event it wrote) is not
that request's child: it runs in a trace of its own, with a link to the request's span. The
request writes its ``current_traceparent()`` down with the event; the worker turns it back into
a link (``link_to``) on the spans that process it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import inject
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)

from middleware.trace_context import CALLER_TRACEPARENT, TraceParent, parse_traceparent
from server import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True, slots=True)
class Tracing:
    provider: TracerProvider
    tracer: Tracer


_ACTIVE: list[Tracing] = []
_ROOT = Context()  # no current span: what starts a trace of its own


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP's rule: the base URL plus ``/v1/traces``, unless the URL already names it."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(_TRACES_PATH) else endpoint + _TRACES_PATH


def start_tracing(endpoint: str | None) -> Tracing | None:
    """Tracing for this process, once; None (and nothing started) when ``endpoint`` is None.

    ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and the
    exporter's ``OTEL_EXPORTER_OTLP_*`` headers, timeout and compression keep their standard
    meanings (the SDK reads them)."""
    if endpoint is None:
        return None
    if _ACTIVE:
        return _ACTIVE[0]
    # Imported here: the SDK, the exporter and protobuf are about 10 MB a process that a
    # process with tracing off does not need.
    import coredis
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or "hotpath",
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    trace.set_tracer_provider(provider)
    coredis.Config.otel_enabled = True
    tracing = Tracing(provider, provider.get_tracer("hotpath", __version__))
    _ACTIVE.append(tracing)
    return tracing


def active_tracer() -> Tracer | None:
    return _ACTIVE[0].tracer if _ACTIVE else None


def flush_tracing(timeout_seconds: float = 5.0) -> None:
    """Send the spans still queued (at shutdown: the processor's thread would drop them)."""
    if _ACTIVE:
        _ACTIVE[0].provider.force_flush(int(timeout_seconds * 1000))


def current_traceparent() -> str | None:
    """The W3C traceparent later work should link to, for a row written now (an outbox event):
    with tracing on, the current span's (a request's server span, sampled or not); with tracing
    off, the caller's, when the request came with a valid ``traceparent``; else None.

    Always rebuilt from parsed ids in version 00's form, never a header's text as it came."""
    if _ACTIVE:
        ids = trace.get_current_span().get_span_context()
        if ids.is_valid:
            return f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags & 0xFF:02x}"
    caller = CALLER_TRACEPARENT.get()
    if caller is None:
        return None
    return f"00-{caller.trace_id}-{caller.parent_id}-{caller.flags:02x}"


# Log fields naming the span whose request caused the work a line is about (a webhook
# delivery): ECS has no field for a linked trace, and ``trace.id``/``span.id`` are the line's
# own trace (ECS, and the OpenTelemetry log data model's TraceId/SpanId: the active span's).
ORIGIN_TRACE_ID_FIELD = "origin.trace.id"
ORIGIN_SPAN_ID_FIELD = "origin.span.id"


def _parsed(traceparent: str | None) -> TraceParent | None:
    # A stored value is checked again when read: no trust in what a table holds.
    if traceparent is None:
        return None
    return parse_traceparent(traceparent.encode("ascii", "replace"))


def origin_fields(traceparent: str | None) -> dict[str, str]:
    """The log fields naming a stored traceparent's trace and span; none without one."""
    parsed = _parsed(traceparent)
    if parsed is None:
        return {}
    return {ORIGIN_TRACE_ID_FIELD: parsed.trace_id, ORIGIN_SPAN_ID_FIELD: parsed.parent_id}


def link_to(traceparent: str | None) -> Link | None:
    """A span link to the span a stored traceparent names (None without one)."""
    parsed = _parsed(traceparent)
    if parsed is None:
        return None
    return Link(
        SpanContext(
            int(parsed.trace_id, 16),
            int(parsed.parent_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(parsed.flags),
        )
    )


def _links(origins: Iterable[str | None]) -> list[Link]:
    # One link per distinct origin: an order's events (order.placed, stock.changed) share one.
    return [link for o in dict.fromkeys(origins) if (link := link_to(o)) is not None]


@contextmanager
def linked_span(
    name: str,
    origins: Iterable[str | None],
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, str | int] | None = None,
) -> Iterator[None]:
    """A span of its own trace, linked to the spans ``origins`` (stored traceparents) name;
    nothing when tracing is off."""
    tracer = active_tracer()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        name, context=_ROOT, kind=kind, links=_links(origins), attributes=attributes
    ):
        yield


class OutboundCall:
    """What an outbound HTTP call adds to its request (``headers``: the W3C trace context)
    and reports about its answer."""

    __slots__ = ("headers", "span")

    def __init__(self, headers: dict[str, str], span: trace.Span | None) -> None:
        self.headers = headers
        self.span = span

    def ids(self) -> tuple[str, str] | None:
        """(trace id, span id) of the call's span; None untraced."""
        if self.span is None:
            return None
        ids = self.span.get_span_context()
        return trace.format_trace_id(ids.trace_id), trace.format_span_id(ids.span_id)

    def answered(self, status: int) -> None:
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)
            if status >= 400:
                self.span.set_status(Status(StatusCode.ERROR))


_UNTRACED = OutboundCall({}, None)


@contextmanager
def outbound_call(method: str, url: str, *, origin: str | None = None) -> Iterator[OutboundCall]:
    """A client span around an outbound HTTP call, whose ``traceparent`` (and ``tracestate``)
    go with the request. Only the host and port are recorded: a webhook URL's path or query
    may hold the receiver's secret. ``origin``: a stored traceparent the span links to (the
    request whose event a webhook delivers); the call's own traceparent stays its span's."""
    tracer = active_tracer()
    if tracer is None:
        yield _UNTRACED
        return
    parts = urlsplit(url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "server.address": parts.hostname or "",
    }
    if parts.port is not None:
        attributes["server.port"] = parts.port
    with tracer.start_as_current_span(
        method, kind=SpanKind.CLIENT, attributes=attributes, links=_links((origin,))
    ) as span:
        headers: dict[str, str] = {}
        inject(headers)
        yield OutboundCall(headers, span)
