"""A live /metrics scrape of `python -m server serve --workers 2` (prometheus multiprocess
mode, rate limits on), taken after some traffic: what Prometheus would read from a replica.
tests/deploy/test_metrics_scrape.py checks it with promtool, test_grafana_dashboard.py that
every metric the dashboard names is in it (or in the worker's scrape, live_worker_scrape)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from server.auth.keys import generate_dev_key
from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.databases import REDIS_URL, create_database, drop_database
from tests.fixtures.servers import stop_process, wait_until_live
from tests.fixtures.support import free_port


def _traffic(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(4):  # fresh connections: both workers take some
            http.get("/readyz", headers={"connection": "close"})
            http.get("/v1/products", headers={"connection": "close"})
            http.get("/v1/products/1", headers={"connection": "close"})
        http.get("/v1/no-such-thing")
        http.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong pw"})


@pytest.fixture(scope="session")
def live_scrape(migrated_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("scraped")
    generate_dev_key(data_dir / "jwt", "EdDSA")
    port = free_port()
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": migrated_db,
        "REDIS_URL": REDIS_URL,
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(data_dir),
        "HOTPATH_ACCESS_LOG": "false",
        "HOTPATH_RATE_LIMITS": "true",
        "HOTPATH_ARGON2_TIME_COST": "1",
        "HOTPATH_ARGON2_MEMORY_KIB": "1024",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = f"http://127.0.0.1:{port}"
    with (data_dir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_live(base, process, seconds=90)  # the suite's other workers load the CPUs
            _traffic(base)
            time.sleep(1.2)  # every worker flushes its counters twice a second
            # Each worker probes its own readiness every 5 s: wait until both found it ready.
            deadline = time.monotonic() + 15
            while True:
                response = httpx.get(base + "/metrics", timeout=10)
                assert response.status_code == 200, response.text
                if "\nhotpath_ready 1.0\n" in response.text or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            yield response.text
        finally:
            stop_process(process)


@pytest.fixture(scope="session")
def live_worker_scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What Prometheus' `worker` job reads: `python -m server worker`'s metrics port. On a
    database of its own, and stopped once read: a worker left running would send the other
    tests' mail."""
    data_dir = tmp_path_factory.mktemp("worker-scraped")
    port = free_port()
    url = asyncio.run(create_database("scrape"))
    asyncio.run(migrate(url, MIGRATIONS_DIR))
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": url,
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(data_dir),
        "HOTPATH_EMBEDDED_DB": "false",
        "HOTPATH_WORKER_METRICS_PORT": str(port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        with (data_dir / "worker.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "server", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"the worker exited: see {data_dir / 'worker.log'}"
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                except httpx.TransportError:
                    text = ""
                if "\nmail_pending " in text:
                    return text
                assert time.monotonic() < deadline, "the worker's metrics did not answer"
                time.sleep(0.2)
        finally:
            stop_process(process)
    finally:
        asyncio.run(drop_database(url))
