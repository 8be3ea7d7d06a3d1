"""The connection pool's metrics, under OpenTelemetry's database client names: connections by
state (idle, used), the pool's maximum, callers waiting, and acquires that timed out. The
connections by state are ``db_client_connections_usage``, semconv's name before 1.26
(db.client.connections.usage): its newer db.client.connection.count would end in ``_count``,
which Prometheus keeps for histograms and summaries (promtool check metrics refuses it). Read
from the pool at scrape time, or pushed by ``flush()`` under multiprocess mode, where each
worker's gauges are summed over the live workers."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.db.pool import ConnectionPool
from server.runtime.metrics import multiprocess_mode

COUNT = "db_client_connections_usage"
COUNT_HELP = "PostgreSQL connections open in the pool, by state (idle or used)."
MAX = "db_client_connection_max"
MAX_HELP = "The most connections the pool may open."
PENDING = "db_client_connection_pending_requests"
PENDING_HELP = "Requests waiting for a connection from the pool."
TIMEOUTS = "db_client_connection_timeouts"
TIMEOUTS_HELP = "Waits for a pool connection that timed out (answered 503)."
_POOL = "hotpath"


class PoolMetrics(Collector):
    def __init__(
        self,
        pool: ConnectionPool,
        *,
        registry: CollectorRegistry | None,
        multiprocess: bool | None = None,
    ) -> None:
        self.pool = pool
        if multiprocess is None:
            multiprocess = multiprocess_mode()
        self.multiprocess = multiprocess
        self._flushed_timeouts = 0
        if multiprocess:
            labels = ("db_client_connection_pool_name",)
            self._count = Gauge(
                COUNT,
                COUNT_HELP,
                (*labels, "db_client_connection_state"),
                registry=None,
                multiprocess_mode="livesum",
            )
            self._max = Gauge(MAX, MAX_HELP, labels, registry=None, multiprocess_mode="livesum")
            self._pending = Gauge(
                PENDING, PENDING_HELP, labels, registry=None, multiprocess_mode="livesum"
            )
            self._timeouts = Counter(TIMEOUTS, TIMEOUTS_HELP, labels, registry=None)
            self._timeouts.labels(_POOL)  # a 0 from the start, as in one process
        elif registry is not None:
            registry.register(self)

    def _values(self) -> tuple[int, int, int, int, int]:
        pool = self.pool
        idle = pool.idle
        return idle, max(pool.size - idle, 0), pool.max_size, pool.pending, pool.timeouts

    def collect(self) -> Iterator[Metric]:
        idle, used, most, pending, timeouts = self._values()
        pool_label = ["db_client_connection_pool_name"]
        count = GaugeMetricFamily(
            COUNT, COUNT_HELP, labels=[*pool_label, "db_client_connection_state"]
        )
        count.add_metric([_POOL, "idle"], float(idle))
        count.add_metric([_POOL, "used"], float(used))
        yield count
        for name, help_text, value in ((MAX, MAX_HELP, most), (PENDING, PENDING_HELP, pending)):
            family = GaugeMetricFamily(name, help_text, labels=pool_label)
            family.add_metric([_POOL], float(value))
            yield family
        counter = CounterMetricFamily(TIMEOUTS, TIMEOUTS_HELP, labels=pool_label)
        counter.add_metric([_POOL], float(timeouts))
        yield counter

    def flush(self) -> None:
        if not self.multiprocess:
            return
        idle, used, most, pending, timeouts = self._values()
        self._count.labels(_POOL, "idle").set(idle)
        self._count.labels(_POOL, "used").set(used)
        self._max.labels(_POOL).set(most)
        self._pending.labels(_POOL).set(pending)
        if timeouts != self._flushed_timeouts:
            self._timeouts.labels(_POOL).inc(timeouts - self._flushed_timeouts)
            self._flushed_timeouts = timeouts
