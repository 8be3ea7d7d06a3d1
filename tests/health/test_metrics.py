"""Readiness metrics: the last readiness found, each dependency's state, and the changes once
the process was first ready (start-up loading is no flap)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from server.health.metrics import HealthMetrics
from server.health.service import Readiness

UP = {"postgres": "ok", "migrations": "current", "redis": "ok"}


def values(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_records_readiness_dependencies_and_changes() -> None:
    registry = CollectorRegistry()
    metrics = HealthMetrics(registry=registry, multiprocess=False)
    assert values(registry, "hotpath_ready") is None
    metrics.record(Readiness(False, {**UP, "revocations": "loading"}))
    metrics.record(Readiness(True, UP))
    assert values(registry, "hotpath_readiness_changes_total") == 0
    assert values(registry, "hotpath_ready") == 1
    metrics.record(Readiness(False, {**UP, "postgres": "unavailable", "redis": "unavailable"}))
    metrics.record(Readiness(True, UP))
    metrics.record(Readiness(True, UP))
    assert values(registry, "hotpath_readiness_changes_total") == 2
    assert values(registry, "hotpath_dependency_up", dependency="postgres") == 1
    metrics.record(Readiness(False, {**UP, "redis": "unavailable"}))
    assert values(registry, "hotpath_dependency_up", dependency="redis") == 0
    assert values(registry, "hotpath_ready") == 0


def test_single_node_redis_is_no_dependency() -> None:
    registry = CollectorRegistry()
    metrics = HealthMetrics(registry=registry, multiprocess=False)
    metrics.record(Readiness(True, {**UP, "redis": "single-node"}))
    assert values(registry, "hotpath_dependency_up", dependency="redis") is None
