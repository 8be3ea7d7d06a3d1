"""Real server processes for the e2e tests: several `python -m server serve` on one database
(sharing one signing key), and throwaway Redis servers the tests may kill."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from server.auth.keys import generate_dev_key
from tests.support import ThrowawayRedis, free_port

Redis = ThrowawayRedis


def wait_until_live(base: str, process: subprocess.Popen[Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            if httpx.get(base + "/livez", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not come up")


@contextmanager
def running_servers(
    count: int,
    *,
    database_url: str,
    redis_url: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[list[str]]:
    """``count`` server processes on one database; yields their base URLs."""
    generate_dev_key(data_dir / "jwt", "EdDSA")  # every process must share one signing key
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(data_dir),
        "HOTPATH_ACCESS_LOG": "false",
        "HOTPATH_ARGON2_TIME_COST": "1",
        "HOTPATH_ARGON2_MEMORY_KIB": "1024",
        "HOTPATH_RATE_LIMITS": "false",  # tests/e2e/test_rate_limit_replicas.py turns it on
        **(extra_env or {}),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    processes: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    log = (data_dir / "servers.log").open("ab")
    try:
        for _ in range(count):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(port)],
                    env=env,
                    # Kept with the test's files: the first place to look when one fails.
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base, process in zip(bases, processes, strict=True):
            wait_until_live(base, process)
        yield bases
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
