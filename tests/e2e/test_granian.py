"""The real thing: `python -m server serve` runs granian workers on a socket."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from server.commands.serve import WORKERS_KILL_TIMEOUT
from server.runtime.settings import Settings
from tests.fixtures.servers import wait_until_live
from tests.fixtures.support import free_port

pytestmark = pytest.mark.slow
DRAIN_SECONDS = 1.5


@pytest.fixture
def server(migrated_db: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": migrated_db,
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(tmp_path),
        "HOTPATH_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "HOTPATH_ACCESS_LOG": "false",
        "HOTPATH_RATE_LIMITS": "false",
        "HOTPATH_ARGON2_TIME_COST": "1",
        "HOTPATH_ARGON2_MEMORY_KIB": "1024",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base, process)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def livez_count(metrics: str) -> float:
    pattern = r'http_server_request_duration_seconds_count\{[^}]*http_route="/livez"[^}]*\} (\S+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_serves_over_a_socket_with_two_workers_and_drains_on_sigterm(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, process = server
    ready = httpx.get(base + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.headers["x-request-id"]

    # Fresh connections spread over both workers; one scrape must still count them all.
    time.sleep(1.2)  # let both workers flush the start-up probes before the baseline
    before = livez_count(httpx.get(base + "/metrics", timeout=5).text)
    sent = 40
    for _ in range(sent):
        response = httpx.get(base + "/livez", headers={"connection": "close"}, timeout=5)
        assert response.status_code == 200
    # Each worker flushes its counters every second (and the scraped one at the scrape).
    deadline = time.monotonic() + 5
    seen = 0.0
    while time.monotonic() < deadline:
        seen = livez_count(httpx.get(base + "/metrics", timeout=5).text) - before
        assert seen <= sent
        if seen == sent:
            break
        time.sleep(0.2)
    assert seen == sent
    assert livez_count(httpx.get(base + "/metrics", timeout=5).text) - before == sent

    process.send_signal(signal.SIGTERM)
    time.sleep(0.4)
    draining = httpx.get(base + "/readyz", timeout=5)
    assert draining.status_code == 503
    assert draining.json()["checks"]["process"] == "draining"
    assert httpx.get(base + "/livez", timeout=5).status_code == 200
    assert process.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/livez", timeout=1)


def test_a_request_in_flight_at_sigterm_is_still_answered(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, process = server
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps({"email": "nobody@example.com", "password": "not the right password"})
    head = (
        "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as upload:
        # A slow upload: the headers and half the body now, the rest once granian is stopping.
        upload.sendall(head.encode() + body[:10].encode())
        process.send_signal(signal.SIGTERM)
        # Through the drain, then granian closes its listener: new connections are refused.
        deadline = time.monotonic() + DRAIN_SECONDS + 5
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/livez", timeout=0.5)
            except httpx.TransportError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("granian kept accepting connections after the drain")
        assert process.poll() is None, "granian stopped without waiting for the request"
        upload.sendall(body[10:].encode())
        answer = b""
        while chunk := upload.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized", answer[:200]
    assert b"application/problem+json" in rest
    assert process.wait(timeout=30) == 0


def test_the_container_stop_grace_period_covers_the_drain_and_the_kill_timeout() -> None:
    """docker sends SIGKILL after stop_grace_period: the drain plus granian's graceful stop of
    the workers must fit in it, or requests in flight are cut at every deploy."""
    compose = yaml.safe_load((Path(__file__).parents[2] / "compose.yaml").read_text())
    grace = compose["services"]["api"]["stop_grace_period"]
    assert grace.endswith("s")
    drain = Settings.from_env(
        {
            "HOTPATH_ENV": "production",
            "DATABASE_URL": "postgresql://app@db/hotpath",
            "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
            "HOTPATH_JWT_KEYS_DIR": "/run/secrets/jwt",
        }
    ).drain_seconds
    assert int(grace[:-1]) >= drain + WORKERS_KILL_TIMEOUT + 5
