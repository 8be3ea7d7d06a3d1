"""The limiter's metrics: decisions by policy and result, Redis calls by outcome, and whether
this process limits on its own (fallback). Requests touch plain ints; prometheus_client's
objects see them through ``collect()``, or through ``flush()`` under multiprocess mode, as
HttpMetrics and the product cache do."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.runtime.metrics import multiprocess_mode

DECISIONS = "hotpath_rate_limit_decisions"
DECISIONS_HELP = "Rate-limit decisions by policy and result (allowed or denied)."
REDIS_CALLS = "hotpath_rate_limit_redis_calls"
REDIS_CALLS_HELP = "Lease requests sent to Redis, by outcome (ok or error)."
FALLBACK = "hotpath_rate_limit_fallback_active"
FALLBACK_HELP = "1 while this process limits on its own share because Redis is unavailable."
_RESULTS = ("allowed", "denied")


class RateLimitMetrics(Collector):
    def __init__(
        self, *, registry: CollectorRegistry | None, multiprocess: bool | None = None
    ) -> None:
        self.decisions: dict[str, list[int]] = {}  # policy -> [allowed, denied]
        self.redis_ok = 0
        self.redis_errors = 0
        self.fallback_active = False
        if multiprocess is None:
            multiprocess = multiprocess_mode()
        self.multiprocess = multiprocess
        self._flushed: dict[tuple[str, ...], int] = {}
        if multiprocess:
            self._decisions = Counter(
                DECISIONS, DECISIONS_HELP, ("policy", "result"), registry=None
            )
            self._calls = Counter(REDIS_CALLS, REDIS_CALLS_HELP, ("result",), registry=None)
            self._fallback = Gauge(
                FALLBACK, FALLBACK_HELP, registry=None, multiprocess_mode="livemax"
            )
        elif registry is not None:
            registry.register(self)

    def counts(self, policy: str) -> list[int]:
        """The policy's [allowed, denied] pair; callers keep it and add to it."""
        found = self.decisions.get(policy)
        if found is None:
            found = self.decisions[policy] = [0, 0]
        return found

    def _samples(self) -> Iterator[tuple[str, tuple[str, ...], int]]:
        for policy, pair in list(self.decisions.items()):
            for result, value in zip(_RESULTS, pair, strict=True):
                yield DECISIONS, (policy, result), value
        yield REDIS_CALLS, ("ok",), self.redis_ok
        yield REDIS_CALLS, ("error",), self.redis_errors

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(DECISIONS, DECISIONS_HELP, labels=("policy", "result"))
        calls = CounterMetricFamily(REDIS_CALLS, REDIS_CALLS_HELP, labels=("result",))
        for name, labels, value in self._samples():
            (decisions if name == DECISIONS else calls).add_metric(list(labels), float(value))
        yield decisions
        yield calls
        yield GaugeMetricFamily(FALLBACK, FALLBACK_HELP, value=float(self.fallback_active))

    def flush(self) -> None:
        """Multiprocess mode: push what was counted since the last flush into the shared files."""
        if not self.multiprocess:
            return
        for name, labels, value in self._samples():
            before = self._flushed.get((name, *labels), 0)
            if value != before:
                counter = self._decisions if name == DECISIONS else self._calls
                counter.labels(*labels).inc(value - before)
                self._flushed[(name, *labels)] = value
        self._fallback.set(float(self.fallback_active))
