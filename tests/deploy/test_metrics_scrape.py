"""/metrics is conventional and complete: promtool check metrics (Debian's prometheus) finds
nothing to say about a live scrape, in one process and with several granian workers, and the
process, Python runtime and build figures are in it."""

from __future__ import annotations

import platform
import re
import subprocess

from server import __version__
from server.app import HotpathApp
from tests.deploy.test_prometheus_config import promtool
from tests.fixtures.support import client_for, lifespan


def promtool_check_metrics(text: str) -> str:
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (result.stdout + result.stderr).strip() if result.returncode else ""


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def test_promtool_accepts_a_served_multiprocess_scrape(live_scrape: str) -> None:
    assert promtool_check_metrics(live_scrape) == ""


async def test_promtool_accepts_an_in_process_scrape(app: HotpathApp) -> None:
    async with lifespan(app), client_for(app) as http:
        await http.get("/readyz")
        await http.get("/v1/products/1")
        text = (await http.get("/metrics")).text
    assert promtool_check_metrics(text) == ""
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
        "python_info",
        "hotpath_build_info",
        "hotpath_ready",
        "hotpath_dependency_up",
        "db_client_connections_usage",
    } <= families(text)


def test_each_worker_reports_its_own_process_figures(live_scrape: str) -> None:
    pids = set(re.findall(r'^process_resident_memory_bytes\{pid="(\d+)"\} ', live_scrape, re.M))
    assert len(pids) == 2, live_scrape
    assert set(re.findall(r'^process_open_fds\{pid="(\d+)"\} ', live_scrape, re.M)) == pids
    # Counters are summed over the workers: one series, no pid.
    (cpu,) = re.findall(r"^process_cpu_seconds_total (\S+)$", live_scrape, re.M)
    assert float(cpu) > 0
    assert re.search(r'^python_gc_collections_total\{generation="0"\} ', live_scrape, re.M)


def test_build_info_names_the_versions(live_scrape: str) -> None:
    (line,) = [x for x in live_scrape.splitlines() if x.startswith("hotpath_build_info{")]
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    assert labels["version"] == __version__
    assert labels["python"] == platform.python_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", labels["granian"])
    assert line.endswith(" 1.0")


def test_readiness_and_dependencies_are_exported(live_scrape: str) -> None:
    assert re.search(r"^hotpath_ready 1\.0$", live_scrape, re.M)
    assert re.search(r'^hotpath_dependency_up\{dependency="postgres"\} 1\.0$', live_scrape, re.M)
    assert re.search(r'^hotpath_dependency_up\{dependency="redis"\} 1\.0$', live_scrape, re.M)
    assert "hotpath_http_shed_requests_total" in live_scrape


def test_the_old_pool_name_is_gone(live_scrape: str) -> None:
    assert "db_client_connection_count" not in live_scrape
    assert 'db_client_connections_usage{db_client_connection_pool_name="hotpath"' in live_scrape
