"""Readiness as the server last found it: whether it was ready, whether PostgreSQL and Redis
answered, and how often readiness changed. Recorded by every /readyz and by the lifespan's
own probe every PROBE_SECONDS, so the figures stay fresh where nothing asks /readyz (compose
probes /livez); never by a request's path otherwise.

Under multiprocess mode the gauges are the minimum over the live workers (one worker that
cannot reach PostgreSQL shows as 0) and the changes are summed.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.health.service import Readiness
from server.runtime.metrics import multiprocess_mode

PROBE_SECONDS = 5.0
READY = "hotpath_ready"
READY_HELP = "1 while /readyz would answer 200 (last probe or /readyz)."
UP = "hotpath_dependency_up"
UP_HELP = "1 while the dependency answered the last readiness check (postgres, redis)."
CHANGES = "hotpath_readiness_changes"
CHANGES_HELP = "Times readiness went from ready to not ready or back, once first ready."
# Redis in single-node mode (no REDIS_URL) is not a dependency: no series for it.
_DEPENDENCIES = ("postgres", "redis")


class HealthMetrics(Collector):
    def __init__(
        self, *, registry: CollectorRegistry | None, multiprocess: bool | None = None
    ) -> None:
        self.ready: bool | None = None
        self._was_ready = False  # start-up (not ready until loaded) is no change
        self.up: dict[str, bool] = {}
        self.changes = 0
        if multiprocess is None:
            multiprocess = multiprocess_mode()
        self.multiprocess = multiprocess
        self._flushed_changes = 0
        if multiprocess:
            self._ready = Gauge(READY, READY_HELP, registry=None, multiprocess_mode="livemin")
            self._up = Gauge(
                UP, UP_HELP, ("dependency",), registry=None, multiprocess_mode="livemin"
            )
            self._changes = Counter(CHANGES, CHANGES_HELP, registry=None)
        elif registry is not None:
            registry.register(self)

    def record(self, readiness: Readiness) -> None:
        if self._was_ready and readiness.ready != self.ready:
            self.changes += 1
        self.ready = readiness.ready
        self._was_ready = self._was_ready or readiness.ready
        for name in _DEPENDENCIES:
            state = readiness.checks.get(name)
            if state is not None and state != "single-node":
                self.up[name] = state == "ok"

    def collect(self) -> Iterator[Metric]:
        if self.ready is not None:
            yield GaugeMetricFamily(READY, READY_HELP, value=float(self.ready))
        up = GaugeMetricFamily(UP, UP_HELP, labels=("dependency",))
        for name, value in list(self.up.items()):
            up.add_metric([name], float(value))
        yield up
        yield CounterMetricFamily(CHANGES, CHANGES_HELP, value=float(self.changes))

    def flush(self) -> None:
        if not self.multiprocess:
            return
        if self.ready is not None:
            self._ready.set(float(self.ready))
        for name, value in list(self.up.items()):
            self._up.labels(name).set(float(value))
        if self.changes != self._flushed_changes:
            self._changes.inc(self.changes - self._flushed_changes)
            self._flushed_changes = self.changes
