"""deploy/prometheus/rules: promtool's unit tests (deploy/prometheus/tests/*.yml) pass, every
alert has a runbook_url naming its section of docs/alerts.md and a test of its own, and both
compose and the local cluster put the rules where prometheus.yml's rule_files finds them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.commands.cluster_edge import Prometheus
from server.runtime.paths import ROOT
from tests.deploy.test_prometheus_config import COMPOSE, CONFIG, PROMETHEUS_DIR, promtool

RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTS_DOC = ROOT / "docs" / "alerts.md"


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_accepts_the_rules() -> None:
    assert RULES
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TESTS, ids=lambda path: path.name)
def test_promtool_rule_tests_pass(path: Path) -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_section_and_a_test() -> None:
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in ALERTS_DOC.read_text().splitlines()
        if line.startswith("## ")
    }
    tested = {
        case["alertname"]
        for path in TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = alert_rules()
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        runbook = rule["annotations"]["runbook_url"]
        assert runbook == f"docs/alerts.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/alerts.md has no section {name}"
        assert rule["labels"]["severity"] in {"page", "warning"}, name
        assert name in tested, f"no promtool test sees {name} fire"


def test_prometheus_yml_loads_the_rules_folder() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["rules/*.yml"]


def test_compose_mounts_the_rules_beside_the_config() -> None:
    volumes = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in volumes


def test_the_local_cluster_copies_the_rules_beside_the_config(tmp_path: Path) -> None:
    prometheus = Prometheus(run_dir=tmp_path, metrics_token="x" * 32)
    copied = sorted(path.name for path in (prometheus.folder / "rules").glob("*.yml"))
    assert copied == [path.name for path in RULES]
    result = subprocess.run(
        [promtool(), "check", "config", str(prometheus.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout + result.stderr
    shutil.rmtree(prometheus.folder)
