"""compose.yaml as a topology: nginx in front of the api replicas with the rendered config,
Prometheus scraping them with the shipped one, each figure agreeing with the file it names.
The schema and hardening checks are in tests/test_container_files.py."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.commands.nginx_config import COMPOSE_CONFIG
from server.runtime.paths import ROOT

COMPOSE = ROOT / "compose.yaml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return loaded


def env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of the service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source
    return found


def test_three_replicas_share_the_limits(services: dict[str, Any]) -> None:
    api = services["api"]
    replicas = api["deploy"]["replicas"]
    assert replicas == 3
    assert "container_name" not in api, "a fixed name allows one container"
    shares = int(env(api)["HOTPATH_RATE_LIMIT_REPLICAS"])
    assert shares == replicas, f"HOTPATH_RATE_LIMIT_REPLICAS {shares} for {replicas} replicas"


def test_nginx_serves_the_rendered_config_in_front_of_the_api(services: dict[str, Any]) -> None:
    nginx = services["nginx"]
    assert mounts(nginx) == {"/etc/nginx/nginx.conf": "./deploy/nginx/compose.conf"}
    config = COMPOSE_CONFIG.read_text()
    (listen,) = re.findall(r"^\s*listen\s+(\d+)", config, re.MULTILINE)
    (published,) = nginx["ports"]
    assert published.rsplit(":", 1)[1] == listen, f"{published} does not reach listen {listen}"
    (upstream,) = re.findall(r"^\s*server\s+(\S+):(\d+)\s", config, re.MULTILINE)
    assert upstream[0] in services, f"the upstream names no service: {upstream[0]}"
    api_port = re.search(r"HOTPATH_PORT=(\d+)", (ROOT / "Dockerfile").read_text())
    assert api_port is not None
    assert upstream[1] == api_port.group(1), (upstream, api_port.group(1))
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    assert nginx["user"].split(":")[0] not in ("0", "root")
    assert nginx["stop_signal"] == "SIGQUIT", "a graceful stop finishes requests in flight"
    shutdown = re.search(r"worker_shutdown_timeout (\d+)s", config)
    assert shutdown is not None
    assert int(nginx["stop_grace_period"].removesuffix("s")) > int(shutdown.group(1))


def test_prometheus_scrapes_with_the_shipped_config_and_the_api_token(
    services: dict[str, Any],
) -> None:
    prometheus = services["prometheus"]
    assert (
        mounts(prometheus)["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    )
    job = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"][0]
    (secret,) = prometheus["secrets"]
    expected = "/etc/prometheus/" + job["authorization"]["credentials_file"]
    assert secret["target"] == expected, (secret, expected)
    source = yaml.safe_load(COMPOSE.read_text())["secrets"][secret["source"]]
    token = env(services["api"])["HOTPATH_METRICS_TOKEN"]
    assert "${" + source["environment"] + ":?" in token, "Prometheus and the api hold one token"


def test_the_trusted_proxies_are_the_stack_network(services: dict[str, Any]) -> None:
    networks = yaml.safe_load(COMPOSE.read_text())["networks"]
    (subnet,) = (c["subnet"] for c in networks["default"]["ipam"]["config"])
    trusted = [
        ipaddress.ip_network(n) for n in env(services["api"])["HOTPATH_TRUSTED_PROXIES"].split(",")
    ]
    assert trusted == [ipaddress.ip_network(subnet)], (trusted, subnet)


def test_every_file_compose_mounts_is_in_the_repository(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for source in mounts(service).values():
            if source.startswith("./secrets"):
                continue  # the operator's own, never committed (.gitignore)
            assert Path(ROOT, source).exists(), f"{name}: {source}"
