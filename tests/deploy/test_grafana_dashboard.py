"""deploy/grafana: Grafana is not installed here, so the dashboard is checked as data. Its JSON
parses, every panel query is PromQL that promtool parses (each written as a recording rule in a
temporary rules file: `promtool check rules` parses offline), every metric a query names is in
a live scrape of a served replica or of a worker (or is a recording rule of
deploy/prometheus/rules), the panels the docs name exist, and compose mounts what the
provisioning files point at."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.runtime.paths import ROOT
from tests.deploy.test_prometheus_config import COMPOSE, promtool
from tests.deploy.test_prometheus_rules import RULES

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Grafana's variables, as a query would run with the dashboard's defaults.
VARIABLES = {"$__rate_interval": "5m", "$job": "hotpath", "$instance": ".*"}
# A metric name right before a selector or a range ({...} or [...]).
METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [panel for panel in found if panel["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def recorded() -> set[str]:
    return {
        rule["record"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_there_is_a_dashboard() -> None:
    assert [path.name for path in DASHBOARDS] == ["hotpath.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_has_a_query_from_the_provisioned_source(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    (datasource,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert datasource["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_query_parses(path: Path, tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{index}", "expr": substituted(expr)}
        for index, (_, expr) in enumerate(queries(load(path)))
    ]
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_metric_a_query_names_is_scraped_or_recorded(
    path: Path, live_scrape: str, live_worker_scrape: str
) -> None:
    scraped = {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in (live_scrape + live_worker_scrape).splitlines()
        if line and not line.startswith("#")
    }
    known = scraped | recorded()
    dashboard = load(path)
    names: dict[str, str] = {}
    for where, expr in queries(dashboard):
        for name in METRIC.findall(substituted(expr)):
            names.setdefault(name, where)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            for name in re.findall(
                r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", variable["definition"]
            ):
                names.setdefault(name, f"variable {variable['name']}")
    assert names
    missing = {name: where for name, where in names.items() if name not in known}
    assert missing == {}


def test_the_panels_the_docs_name_exist() -> None:
    titles = {panel["title"] for path in DASHBOARDS for panel in panels(load(path))}
    for doc in ("alerts.md", "observability.md"):
        text = (ROOT / "docs" / doc).read_text()
        named = set(re.findall(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])", text))
        assert named, doc
        assert named <= titles, (doc, named - titles)


def test_provisioning_points_where_compose_mounts() -> None:
    service = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = {
        target: source
        for source, target, *_ in (volume.split(":") for volume in service["volumes"])
    }
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provisioning = GRAFANA / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "hotpath.yml").read_text())[
        "providers"
    ]
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in yaml.safe_load(COMPOSE.read_text())["services"]
    assert service["depends_on"]["prometheus"]["condition"] == "service_healthy"
