"""The product cache's hit/miss counters as Prometheus metrics: a collector in the app's
registry, or, under prometheus multiprocess mode, flushed into the shared files as HttpMetrics
does. The cache counts in plain attributes (a warm read pays an integer increment); this reads
them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from server.runtime.metrics import multiprocess_mode

_REQUESTS = "hotpath_cache_requests"
_REQUESTS_HELP = "Cache lookups by the layer that answered (miss: loaded from PostgreSQL)."
_COALESCED = "hotpath_cache_coalesced"
_COALESCED_HELP = "Cache lookups that waited for a load already in flight."
_RESULTS = ("local_hit", "redis_hit", "miss")

Counts = Callable[[], tuple[int, int, int, int]]  # local_hit, redis_hit, miss, coalesced


class ProductCacheMetrics(Collector):
    """``registry`` gets the counters as a collector; in multiprocess mode ``flush()`` pushes
    what was counted since the last flush instead."""

    def __init__(
        self, counts: Counts, *, registry: CollectorRegistry | None, multiprocess: bool | None
    ) -> None:
        self._counts = counts
        self._flushed = [0, 0, 0, 0]
        if multiprocess is None:
            multiprocess = multiprocess_mode()
        self.multiprocess = multiprocess
        if multiprocess:
            self.requests = Counter(_REQUESTS, _REQUESTS_HELP, ("cache", "result"), registry=None)
            coalesced = Counter(_COALESCED, _COALESCED_HELP, ("cache",), registry=None)
            self._children = [self.requests.labels("product", result) for result in _RESULTS]
            self._children.append(coalesced.labels("product"))
        elif registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        requests = CounterMetricFamily(_REQUESTS, _REQUESTS_HELP, labels=("cache", "result"))
        for result, value in zip(_RESULTS, counts, strict=False):
            requests.add_metric(["product", result], float(value))
        yield requests
        coalesced = CounterMetricFamily(_COALESCED, _COALESCED_HELP, labels=("cache",))
        coalesced.add_metric(["product"], float(counts[3]))
        yield coalesced

    def flush(self) -> None:
        """Multiprocess mode: push what was counted since the last flush into the shared files."""
        if not self.multiprocess:
            return
        now = self._counts()
        for child, count, before in zip(self._children, now, self._flushed, strict=True):
            if count != before:
                child.inc(count - before)
        self._flushed = list(now)
