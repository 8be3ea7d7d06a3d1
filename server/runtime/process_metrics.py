"""The process and the Python runtime in /metrics: prometheus_client's ``process_*`` and
``python_gc_*`` families, ``python_info`` and ``hotpath_build_info``.

In one process they are prometheus_client's own collectors, read at scrape time. Under
multiprocess mode (several granian workers) those would describe only the worker answering
the scrape, so each worker writes its own figures to the shared files at every flush (twice a
second, and before a scrape it answers), off the request path:

- the gauges (``process_resident_memory_bytes``, ``process_virtual_memory_bytes``,
  ``process_open_fds``, ``process_max_fds``, ``process_start_time_seconds``) once per worker,
  labelled ``pid``; a worker's series go when it stops (prometheus_client's ``liveall``);
- the counters (``process_cpu_seconds_total``, ``python_gc_*_total``) summed over every worker
  the server has run, stopped ones included, so they never go back.

``python_info`` and ``hotpath_build_info`` are the same in every worker: the one answering
reports them.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from server import __version__

BUILD_INFO = "hotpath_build_info"
BUILD_INFO_HELP = "Always 1: the running hotpath's version, and those of Python and granian."


def _granian_version() -> str:
    try:
        return version("granian")
    except PackageNotFoundError:
        return "unknown"


class BuildInfo(Collector):
    def __init__(self) -> None:
        self._family = GaugeMetricFamily(
            BUILD_INFO, BUILD_INFO_HELP, labels=("version", "python", "granian")
        )
        self._family.add_metric([__version__, platform.python_version(), _granian_version()], 1.0)

    def collect(self) -> Iterator[Metric]:
        yield self._family


def register_build_info(registry: CollectorRegistry) -> None:
    """On the registry a scrape reads (constant: any worker may answer for all)."""
    registry.register(BuildInfo())
    PlatformCollector(registry=registry)


class RuntimeMetrics:
    """This process's CPU, memory, file descriptors and garbage collector."""

    def __init__(self, *, registry: CollectorRegistry | None, multiprocess: bool) -> None:
        self.multiprocess = multiprocess
        self._process = ProcessCollector(registry=None)
        # prometheus_client's GCCollector registers itself; a throwaway registry keeps it ours.
        self._gc = GCCollector(registry=CollectorRegistry(auto_describe=False))
        self._gauges: dict[str, Gauge] = {}
        self._counters: dict[str, Counter] = {}
        self._flushed: dict[tuple[str, tuple[str, ...]], float] = {}
        if not multiprocess and registry is not None:
            registry.register(self._process)
            registry.register(self._gc)

    def flush(self) -> None:
        """Multiprocess mode: this worker's figures into the shared files."""
        if not self.multiprocess:
            return
        for family in (*self._process.collect(), *self._gc.collect()):
            for sample in family.samples:
                labelnames = tuple(sorted(sample.labels))
                labels = tuple(sample.labels[name] for name in labelnames)
                if family.type == "counter":
                    if not sample.name.endswith("_total"):
                        continue
                    key = (sample.name, labels)
                    delta = sample.value - self._flushed.get(key, 0.0)
                    if delta > 0:
                        counter = self._counter(family, labelnames)
                        (counter.labels(*labels) if labels else counter).inc(delta)
                        self._flushed[key] = sample.value
                else:
                    gauge = self._gauge(family, labelnames)
                    (gauge.labels(*labels) if labels else gauge).set(sample.value)

    def _counter(self, family: Metric, labelnames: tuple[str, ...]) -> Counter:
        found = self._counters.get(family.name)
        if found is None:
            found = self._counters[family.name] = Counter(
                family.name, family.documentation, labelnames, registry=None
            )
        return found

    def _gauge(self, family: Metric, labelnames: tuple[str, ...]) -> Gauge:
        found = self._gauges.get(family.name)
        if found is None:
            found = self._gauges[family.name] = Gauge(
                family.name,
                family.documentation,
                labelnames,
                registry=None,
                multiprocess_mode="liveall",
            )
        return found
