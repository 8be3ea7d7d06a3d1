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
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from server import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True, slots=True)
class Tracing:
    provider: TracerProvider
    tracer: Tracer


_ACTIVE: list[Tracing] = []


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


class OutboundCall:
    """What an outbound HTTP call adds to its request (``headers``: the W3C trace context)
    and reports about its answer."""

    __slots__ = ("headers", "span")

    def __init__(self, headers: dict[str, str], span: trace.Span | None) -> None:
        self.headers = headers
        self.span = span

    def answered(self, status: int) -> None:
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)
            if status >= 400:
                self.span.set_status(Status(StatusCode.ERROR))


_UNTRACED = OutboundCall({}, None)


@contextmanager
def outbound_call(method: str, url: str) -> Iterator[OutboundCall]:
    """A client span around an outbound HTTP call, whose ``traceparent`` (and ``tracestate``)
    go with the request. Only the host and port are recorded: a webhook URL's path or query
    may hold the receiver's secret."""
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
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        headers: dict[str, str] = {}
        inject(headers)
        yield OutboundCall(headers, span)
