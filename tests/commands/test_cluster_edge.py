"""The local cluster's nginx and Prometheus, short of running them (tests/cluster/ does): what
they are given to read, and the message when one is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from server.commands import cluster_edge
from server.commands.cluster_edge import PROMETHEUS_CONFIG, ClusterError, Nginx, Prometheus
from server.commands.nginx_config import Upstream


def test_a_missing_program_is_named_with_how_to_install_it() -> None:
    with pytest.raises(ClusterError, match=r"no-such-proxy is not installed: `make tools`"):
        cluster_edge.tool("no-such-proxy")


def test_nginx_is_given_the_ready_replicas_and_the_others_marked_down(tmp_path: Path) -> None:
    nginx = Nginx(port=18080, run_dir=tmp_path)
    try:
        nginx.configure((Upstream("127.0.0.1:1001"), Upstream("127.0.0.1:1002", down=True)))
        config = nginx.config.read_text()
        servers = re.findall(r"^\s*server (127\.0\.0\.1:\S+)( down)?", config, re.MULTILINE)
        assert servers == [("127.0.0.1:1001", ""), ("127.0.0.1:1002", " down")]
        assert "listen 127.0.0.1:18080 default_server;" in config
        assert f"pid {nginx.runtime}/nginx.pid;" in config
        # No replica at all still makes a configuration nginx accepts: one server, down.
        nginx.configure(())
        assert re.search(r"^\s*server 127\.0\.0\.1:9 down", nginx.config.read_text(), re.M)
    finally:
        nginx.stop(lambda: True)
    assert not nginx.runtime.exists()


def test_prometheus_runs_the_shipped_config_beside_its_targets_and_token(tmp_path: Path) -> None:
    prometheus = Prometheus(run_dir=tmp_path, metrics_token="t" * 32)
    assert prometheus.config.read_bytes() == PROMETHEUS_CONFIG.read_bytes()
    token = prometheus.folder / "secrets" / "metrics_token"
    assert token.read_text() == "t" * 32
    prometheus.scrape({"127.0.0.1:1001": "1", "127.0.0.1:1002": "2"})
    targets = json.loads((prometheus.folder / "targets" / "hotpath.json").read_text())
    assert targets == [
        {"targets": ["127.0.0.1:1001"], "labels": {"replica": "1"}},
        {"targets": ["127.0.0.1:1002"], "labels": {"replica": "2"}},
    ]
