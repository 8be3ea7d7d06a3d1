"""deploy/nginx: the template renders what compose mounts and what the local cluster runs, and
Debian's nginx accepts both (`nginx -t`); the settings an operator relies on are in it, each
checked against the server setting it must agree with."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from server.commands.nginx_config import (
    COMPOSE_CONFIG,
    COMPOSE_SITE,
    Site,
    TemplateError,
    Upstream,
    compose_config,
    render,
)
from server.commands.serve import GRANIAN_TIMEOUT_FLAGS
from server.runtime.settings import Settings

SIZES = {"k": 1024, "m": 1024 * 1024}


def nginx() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        pytest.fail("nginx is not installed: `make tools` installs Debian's (as root)")
    return found


def cluster_site(tmp_path: Path, *ports: int) -> Site:
    return Site(
        listen="127.0.0.1:18080",
        runtime_dir=str(tmp_path),
        access_log=str(tmp_path / "access.log"),
        error_log=str(tmp_path / "error.log"),
        servers=tuple(Upstream(f"127.0.0.1:{port}") for port in ports or (18081,)),
        worker_processes="1",
    )


def nginx_t(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "nginx.conf"
    path.write_text(config)
    return subprocess.run(
        [nginx(), "-t", "-q", "-c", str(path), "-g", "daemon off;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def directive(config: str, name: str) -> str:
    """The one value of a directive that must appear exactly once."""
    found: list[str] = re.findall(rf"^\s*{name}\s+([^;]*);", config, re.MULTILINE)
    assert len(found) == 1, f"{name}: {found}"
    return found[0].strip()


def size(text: str) -> int:
    return int(text[:-1]) * SIZES[text[-1].lower()] if text[-1].isalpha() else int(text)


def seconds(text: str) -> float:
    return float(text.removesuffix("s"))


def granian_header_read_timeout() -> float:
    flags = list(GRANIAN_TIMEOUT_FLAGS)
    return int(flags[flags.index("--http1-header-read-timeout") + 1]) / 1000


def block(config: str, head: str) -> str:
    start = config.index(head)
    end = config.index("}", start)
    return config[start:end]


def test_compose_config_is_the_template_rendered() -> None:
    assert COMPOSE_CONFIG.read_text() == compose_config(), (
        "deploy/nginx/compose.conf is not what the template renders: run make deploy-config"
    )


def test_a_server_line_is_repeated_per_replica(tmp_path: Path) -> None:
    servers = (Upstream("127.0.0.1:1001"), Upstream("127.0.0.1:1002", down=True))
    site = replace(cluster_site(tmp_path), servers=servers)
    lines = re.findall(r"^\s*server (127\.0\.0\.1:\d+[^;]*);", render(site), re.MULTILINE)
    assert lines == [
        "127.0.0.1:1001 max_fails=1 fail_timeout=5s",
        "127.0.0.1:1002 down max_fails=1 fail_timeout=5s",
    ]
    assert "server api:8000 resolve max_fails=1" in compose_config()


def test_the_renderer_refuses_what_does_not_fit(tmp_path: Path) -> None:
    site = cluster_site(tmp_path)
    with pytest.raises(TemplateError, match="no value for"):
        render(site, "listen {{listen}}; {{nonsense}}\nserver {{server}};\n")
    with pytest.raises(TemplateError, match="no place for"):
        render(site, "server {{server}};\n")  # listen, logs, runtime dir have nowhere to go
    with pytest.raises(TemplateError, match="at least one server"):
        render(replace(site, servers=()))


def test_debian_nginx_accepts_the_cluster_config(tmp_path: Path) -> None:
    result = nginx_t(render(cluster_site(tmp_path, 18081, 18082)), tmp_path)
    assert result.returncode == 0, result.stderr


def test_debian_nginx_accepts_the_compose_config(tmp_path: Path) -> None:
    """compose's image is a newer nginx: `resolve` on a server (1.27.3+) and Docker's DNS name
    are the two things Debian's 1.22 cannot check here, so they are swapped for a loopback
    address; every other line is the committed file's."""
    config = COMPOSE_CONFIG.read_text()
    config = config.replace("api:8000 resolve", "127.0.0.1:18081")
    config = config.replace(f"pid {COMPOSE_SITE.runtime_dir}/", f"pid {tmp_path}/")
    config = re.sub(r"_temp_path /tmp/", f"_temp_path {tmp_path}/", config)
    result = nginx_t(config, tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_upstream_balances_by_least_connections_over_kept_alive_connections() -> None:
    upstream = block(compose_config(), "upstream hotpath {")
    assert "least_conn;" in upstream
    assert int(directive(upstream, "keepalive")) >= 16
    assert "zone hotpath" in upstream, "failed replicas are shared by the workers"
    header_read = granian_header_read_timeout()
    idle = seconds(directive(upstream, "keepalive_timeout"))
    assert idle < header_read, (
        f"nginx keeps idle upstream connections {idle} s, granian closes them after"
        f" {header_read} s: nginx must close first, or a POST can go down a closing one"
    )


def test_only_idempotent_requests_move_to_the_next_replica() -> None:
    config = compose_config()
    conditions = directive(config, "proxy_next_upstream").split()
    assert "non_idempotent" not in conditions, "a POST sent once must never be sent again"
    assert {"error", "timeout"} <= set(conditions), conditions
    assert int(directive(config, "proxy_next_upstream_tries")) <= 3


def test_requests_carry_the_id_and_the_client_address() -> None:
    config = compose_config()
    headers = dict(re.findall(r"^\s*proxy_set_header\s+(\S+)\s+([^;]*);", config, re.M))
    assert headers["X-Request-ID"] == "$request_id"
    # Replaced, never appended: a client cannot choose the address hotpath limits and logs.
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["Connection"] == '""', "upstream keep-alive needs the header cleared"
    log_format = config[config.index("log_format hotpath escape=json") :]
    log_format = log_format[: log_format.index(";")]
    for field in ('"request_id":"$request_id"', '"upstream":"$upstream_addr"', '"status":$status'):
        assert field in log_format, field
    assert "$request_uri" not in log_format, "the query string may carry secrets"


def test_limits_agree_with_the_replicas() -> None:
    config = compose_config()
    settings = Settings()
    body = size(directive(config, "client_max_body_size"))
    assert body == settings.max_body_bytes, (body, settings.max_body_bytes)
    header_read = granian_header_read_timeout()
    assert seconds(directive(config, "client_header_timeout")) <= header_read
    assert seconds(directive(config, "client_body_timeout")) <= settings.body_timeout
    header_line = directive(config, "large_client_header_buffers").split()
    assert size(header_line[1]) <= 16 * 1024, header_line
    read = seconds(directive(config, "proxy_read_timeout"))
    assert read > settings.request_timeout, (
        f"nginx gives up after {read} s, before the replica's own {settings.request_timeout} s"
    )
    assert seconds(directive(config, "proxy_connect_timeout")) <= 5


def test_metrics_are_not_served() -> None:
    config = compose_config()
    location = block(config, "location ~* ^/metrics(/|$) {")
    assert "return 404;" in location
    assert "proxy_pass" not in location
