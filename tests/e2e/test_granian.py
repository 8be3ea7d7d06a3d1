"""The real thing: `python -m server serve` runs granian workers on a socket."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import wait_until_live
from tests.support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(migrated_db: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": migrated_db,
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(tmp_path),
        "HOTPATH_DRAIN_SECONDS": "1.5",
        "HOTPATH_ACCESS_LOG": "false",
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
