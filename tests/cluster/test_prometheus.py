"""The cluster's Prometheus runs deploy/prometheus/prometheus.yml as shipped and scrapes every
replica with the metrics token (a replica refuses /metrics without it): its targets API says
each one is up, and each scrape brought samples. It scrapes the worker too (the `worker` job),
whose backlog gauges are what the outbox backlog alert reads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.commands.cluster_edge import PROMETHEUS_CONFIG
from tests.cluster.conftest import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
LIMIT = 40.0  # the job scrapes every 10 s; a new target's first scrape comes within one


def hotpath_targets(prometheus: str, job: str = "hotpath") -> list[dict[str, Any]]:
    targets = httpx.get(prometheus + "/api/v1/targets", params={"state": "active"}).json()
    return [t for t in targets["data"]["activeTargets"] if t["labels"]["job"] == job]


def test_prometheus_scrapes_every_replica_with_the_shipped_config(cluster: LocalCluster) -> None:
    state = cluster.state()
    assert Path(state["prometheus"]["config"]).read_bytes() == PROMETHEUS_CONFIG.read_bytes()
    prometheus = state["prometheus"]["url"]
    deadline = time.monotonic() + LIMIT
    while True:
        wanted = {replica["url"] + "/metrics" for replica in cluster.replicas()}
        targets = {t["scrapeUrl"]: t for t in hotpath_targets(prometheus)}
        health = {url: targets[url]["health"] if url in targets else "absent" for url in wanted}
        if set(health.values()) == {"up"}:
            break
        if time.monotonic() > deadline:
            errors = {url: targets.get(url, {}).get("lastError") for url in wanted}
            raise AssertionError(f"after {LIMIT:.0f} s: {health}; errors {errors}")
        time.sleep(0.5)
    assert set(targets) == wanted, f"Prometheus scrapes {sorted(targets)}, not {sorted(wanted)}"

    samples = httpx.get(
        prometheus + "/api/v1/query",
        params={"query": 'scrape_samples_scraped{job="hotpath"} > 0'},
    ).json()["data"]["result"]
    instances = {sample["metric"]["instance"] for sample in samples}
    expected = {url.removeprefix("http://").removesuffix("/metrics") for url in wanted}
    assert expected <= instances, f"samples from {sorted(instances)}, wanted {sorted(expected)}"


def test_prometheus_scrapes_the_worker_and_its_backlog_gauges(cluster: LocalCluster) -> None:
    state = cluster.state()
    prometheus, wanted = state["prometheus"]["url"], state["worker"]["metrics_url"]
    deadline = time.monotonic() + LIMIT
    while True:
        targets = {t["scrapeUrl"]: t for t in hotpath_targets(prometheus, "worker")}
        if targets.get(wanted, {}).get("health") == "up":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"after {LIMIT:.0f} s the worker's target is {targets}")
        time.sleep(0.5)
    assert set(targets) == {wanted}
    instance = wanted.removeprefix("http://").removesuffix("/metrics")
    # What HotpathOutboxBacklog reads, and the webhook and mail backlogs beside it: present
    # once the worker has measured the database (every 5 s), and scraped from it alone.
    names = (
        "outbox_oldest_unpublished_age_seconds",
        "outbox_events_unpublished",
        "webhook_deliveries_pending",
        "mail_pending",
        "mail_oldest_pending_age_seconds",
    )
    deadline = time.monotonic() + LIMIT
    while True:
        found = {
            name: httpx.get(prometheus + "/api/v1/query", params={"query": name}).json()["data"][
                "result"
            ]
            for name in names
        }
        if all(found.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for name, samples in found.items():
        assert [sample["metric"]["job"] for sample in samples] == ["worker"], (name, samples)
        assert samples[0]["metric"]["instance"] == instance
