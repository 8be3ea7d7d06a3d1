"""deploy/prometheus: the shipped scrape config is valid for Debian's Prometheus (promtool), finds
compose's replicas by DNS and the local cluster's from targets/, and authenticates to /metrics.
tests/cluster/ runs this very file against live replicas."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.runtime.paths import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
COMPOSE = ROOT / "compose.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: `make tools` installs Debian's prometheus")
    return found


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(CONFIG.read_text())
    found = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(found) == {"hotpath", "worker"}, found
    return found


@pytest.fixture(scope="module")
def job(jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return jobs["hotpath"]


def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    shutil.copytree(PROMETHEUS_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "metrics_token").write_text("x" * 32)
    result = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_replicas_are_scraped_with_the_metrics_token(job: dict[str, Any]) -> None:
    assert job.get("metrics_path", "/metrics") == "/metrics"
    authorization = job["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    # Relative to the config's folder: compose mounts its secret there, the cluster writes one.
    assert authorization["credentials_file"] == "secrets/metrics_token"
    assert "credentials" not in authorization, "no token in the file itself"


def test_compose_replicas_are_found_by_dns(job: dict[str, Any]) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["api"]
    assert "api" in compose["services"]
    assert dns["type"] == "A"
    assert dns["port"] == 8000


def test_other_replicas_come_from_the_targets_folder(job: dict[str, Any]) -> None:
    (files,) = job["file_sd_configs"]
    assert files["files"] == ["targets/*.json"]
    for path in (PROMETHEUS_DIR / "targets").glob("*.json"):
        groups = json.loads(path.read_text())
        assert isinstance(groups, list), path
        for group in groups:
            assert set(group) <= {"targets", "labels"}, (path, group)


def test_compose_workers_are_scraped_on_their_metrics_port(jobs: dict[str, dict[str, Any]]) -> None:
    """The outbox backlog alert reads gauges only the worker serves: without this job it could
    never fire."""
    worker = jobs["worker"]
    assert "authorization" not in worker  # the worker's metrics port asks for no token
    (dns,) = worker["dns_sd_configs"]
    assert dns["names"] == ["worker"]
    service = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    assert service["command"] == ["worker"]
    assert service["environment"]["HOTPATH_WORKER_METRICS_PORT"] == str(dns["port"])
    # The image listens on 0.0.0.0 (HOTPATH_HOST), so the port is reachable in the network.
    assert "HOTPATH_HOST=0.0.0.0" in (ROOT / "Dockerfile").read_text()
    # Its file targets are a folder of their own: the hotpath job's targets/*.json never
    # sees them (and would scrape them with the replicas' token).
    (files,) = worker["file_sd_configs"]
    assert files["files"] == ["targets/worker/*.json"]
