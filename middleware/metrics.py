"""HTTP server metrics under OpenTelemetry's semantic-convention names."""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter

from prometheus_client import CollectorRegistry, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import route_template

# OpenTelemetry's advice for http.server.request.duration.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
OTHER_METHOD = "_OTHER"


class HttpMetrics:
    """The HTTP collectors, registered on `registry` (None: not registered anywhere).

    Under prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before prometheus_client
    is imported) each process writes its own files and the scrape sums them.
    """

    def __init__(self, *, registry: CollectorRegistry | None) -> None:
        self.request_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ("http_request_method", "http_route", "http_response_status_code"),
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.active_requests = Gauge(
            "http_server_active_requests",
            "Number of active HTTP server requests.",
            ("http_request_method",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        # .labels() validates and hashes on every call; children are reused instead.
        self._durations: dict[tuple[str, str, int], Histogram] = {}
        self._actives: dict[str, Gauge] = {}

    def active(self, method: str) -> Gauge:
        """The active-requests gauge of a (normalised) method."""
        child = self._actives.get(method)
        if child is None:
            child = self._actives[method] = self.active_requests.labels(method)
        return child

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request; `route` must be a template, never a raw path."""
        key = (method, route, status)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self.request_duration.labels(method, route, str(status))
        child.observe(seconds)


class MetricsMiddleware:
    """Time every HTTP request and count the ones in flight."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        if not isinstance(metrics, HttpMetrics):
            raise TypeError("metrics must be an HttpMetrics")
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        metrics = self.metrics
        active = metrics.active(method)
        status = 0

        def send_observing(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        active.inc()
        start = perf_counter()
        try:
            await self.app(scope, receive, send_observing)
        except Exception:
            metrics.observe(method, route_template(scope), status or 500, perf_counter() - start)
            raise
        else:
            # An app that returns without answering gets a 500 from the server.
            metrics.observe(method, route_template(scope), status or 500, perf_counter() - start)
        finally:
            active.dec()
