"""HTTP server metrics under OpenTelemetry's semantic-convention names.

A request only touches plain Python counters (a dict lookup, a bisect, two additions);
prometheus_client's own objects take a lock per update and cost several times that. The
counters are exported by a collector on the registry, or, in prometheus multiprocess mode
(several granian workers), flushed into prometheus_client's per-process files by ``flush()``,
which the server calls every second and before each scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Scope

from middleware.edge import EdgeMiddleware
from middleware.types import RouteResolver

# OpenTelemetry's advice for http.server.request.duration.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
OTHER_METHOD = "_OTHER"
DURATION = "http_server_request_duration_seconds"
DURATION_HELP = "Duration of HTTP server requests."
ACTIVE = "http_server_active_requests"
ACTIVE_HELP = "Number of active HTTP server requests."
SHED = "hotpath_http_shed_requests"
SHED_HELP = "Requests refused with 503 overloaded because the in-flight cap was reached."
_LABELS = ("http_request_method", "http_route", "http_response_status_code")
_BOUNDS = [*(floatToGoString(b) for b in DURATION_BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]


class _Series:
    """One (method, route, status) histogram: per-bucket (not cumulative) counts and a sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0


class HttpMetrics(Collector):
    """The HTTP request histogram and the in-flight gauge; the edge (middleware/edge.py) calls
    ``begin``, ``observe`` and ``leave`` around each request.

    ``registry`` receives this object as a collector (None: not registered). Under
    ``multiprocess`` mode (the server passes whether ``PROMETHEUS_MULTIPROC_DIR`` is set)
    nothing is registered: ``flush()`` writes to prometheus_client's files and a
    MultiProcessCollector reads every worker's.
    """

    def __init__(self, *, registry: CollectorRegistry | None, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.series: dict[tuple[str, str, int], _Series] = {}
        self.active: dict[str, int] = {}
        self.shed = 0
        self._flushed_shed = 0
        self._flushed: dict[tuple[str, str, int], tuple[list[int], float]] = {}
        if multiprocess:
            self._histogram = Histogram(
                DURATION, DURATION_HELP, _LABELS, registry=None, buckets=DURATION_BUCKETS
            )
            self._gauge = Gauge(
                ACTIVE, ACTIVE_HELP, ("http_request_method",), registry=None,
                multiprocess_mode="livesum",
            )  # fmt: skip
            self._shed = Counter(SHED, SHED_HELP, registry=None)
        elif registry is not None:
            registry.register(self)

    def begin(self, scope: Scope) -> str:
        """The request's method label; the request counts as in flight until ``leave``."""
        method: str = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        active = self.active
        active[method] = active.get(method, 0) + 1
        return method

    def leave(self, method: str) -> None:
        """The request is done: answered, failed or cancelled (the client gone, not counted as
        an answer by ``observe``)."""
        self.active[method] -= 1

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request; `route` must be a template, never a raw path."""
        key = (method, route, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        series.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        series.total += seconds

    def count_shed(self) -> None:
        """One request refused by the in-flight cap (called on that path only)."""
        self.shed += 1

    def collect(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(DURATION, DURATION_HELP, labels=_LABELS)
        for (method, route, status), series in list(self.series.items()):
            cumulative, running = [], 0
            for bound, count in zip(_BOUNDS, series.counts, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            histogram.add_metric([method, route, str(status)], cumulative, series.total)
        yield histogram
        gauge = GaugeMetricFamily(ACTIVE, ACTIVE_HELP, labels=("http_request_method",))
        for method, value in list(self.active.items()):
            gauge.add_metric([method], float(value))
        yield gauge
        yield CounterMetricFamily(SHED, SHED_HELP, value=float(self.shed))

    def flush(self) -> None:
        """Multiprocess mode: push what changed since the last flush into the shared files."""
        if not self.multiprocess:
            return
        for key, series in list(self.series.items()):
            counts, total = self._flushed.get(key) or ([0] * len(series.counts), 0.0)
            if counts == series.counts:
                continue
            child = self._histogram.labels(key[0], key[1], str(key[2]))
            # prometheus_client has no bulk observe; its per-bucket values take increments.
            for index, (now, before) in enumerate(zip(series.counts, counts, strict=True)):
                if now != before:
                    child._buckets[index].inc(now - before)
            child._sum.inc(series.total - total)
            self._flushed[key] = (list(series.counts), series.total)
        for method, value in list(self.active.items()):
            self._gauge.labels(method).set(value)
        if self.shed != self._flushed_shed:
            self._shed.inc(self.shed - self._flushed_shed)
            self._flushed_shed = self.shed


class MetricsMiddleware(EdgeMiddleware):
    """The metrics alone as a layer: time every HTTP request and count the ones in flight (the
    server's stack runs them in its one edge layer)."""

    def __init__(
        self, app: ASGIApp, *, metrics: HttpMetrics, resolve_route: RouteResolver | None = None
    ) -> None:
        if not isinstance(metrics, HttpMetrics):
            raise TypeError("metrics must be an HttpMetrics")
        super().__init__(app, metrics=metrics, resolve_route=resolve_route)
