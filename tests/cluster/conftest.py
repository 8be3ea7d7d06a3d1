"""The local cluster (`python -m server cluster`) the tests in this folder run on: real nginx,
real replicas, real Prometheus, on the run's migrated database and a Redis of its own. One
cluster serves the whole folder (a session fixture); the migration test starts its own.

Marker `cluster`: `make test-cluster` runs these, `make test` leaves them out (addopts)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import login
from tests.fixtures.support import ThrowawayRedis, free_port
from tests.fixtures.users import insert_user

READ_RATE = 300  # anonymous and per-user GET budget a second (and the burst)
ENV = {
    "HOTPATH_ENV": "test",
    "HOTPATH_ARGON2_TIME_COST": "1",
    "HOTPATH_ARGON2_MEMORY_KIB": "1024",
    "HOTPATH_ACCESS_LOG": "true",
    "HOTPATH_RATE_LIMITS": "true",
    "HOTPATH_RATE_LIMIT_READ": f"{READ_RATE}/1",
    # The load tests place orders and log in far more often than a customer would.
    "HOTPATH_RATE_LIMIT_WRITE": "100000/60",
    "HOTPATH_RATE_LIMIT_AUTH": "100000/60",
    "HOTPATH_DRAIN_SECONDS": "1",
    # Connections made up front: a connect in a saturated event loop can outlast the 1 s
    # acquire timeout.
    "HOTPATH_DB_POOL_MIN": "4",
}
START_TIMEOUT = 180.0


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a log (a replica's also holds granian's and the banner's)."""
    lines = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
    return lines


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> dict[int, str]:
    """``root``'s live descendants: pid -> start time (so a reused pid is told apart)."""
    parents: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
            started[int(entry)] = fields[19]
    found: dict[int, str] = {}
    queue = list(parents.get(root, ()))
    while queue:
        pid = queue.pop()
        found[pid] = started[pid]
        queue.extend(parents.get(pid, ()))
    return found


def still_running(tree: dict[int, str]) -> list[int]:
    return [
        pid
        for pid, start in tree.items()
        if (fields := _stat(pid)) is not None and fields[0] != "Z" and fields[19] == start
    ]


@dataclass
class LocalCluster:
    process: subprocess.Popen[bytes]
    run_dir: Path
    database_url: str

    @property
    def output(self) -> str:
        return (self.run_dir / "cluster.out").read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.run_dir / "cluster.json").read_text())
        return loaded

    @property
    def url(self) -> str:
        url: str = self.state()["url"]
        return url

    def replicas(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.state()["replicas"]
        return found

    def nginx_log(self) -> list[dict[str, Any]]:
        return read_json_lines(self.run_dir / "nginx-access.log")

    def wait_until(self, condition: str, test: Any, limit: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the cluster exited ({self.process.returncode}):\n"
                                     + self.output[-3000:])  # fmt: skip
            try:
                if test(self.state()):
                    return
            except (OSError, json.JSONDecodeError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"{condition}: not within {limit} s\n" + self.output[-3000:])

    def stop(self) -> tuple[int, list[int], float]:
        """SIGTERM, as an operator's Ctrl-C or a service manager would: the exit code, what
        was left running (killed here) and how long it took."""
        tree = process_tree(self.process.pid)
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        took = time.monotonic() - started
        time.sleep(0.2)  # a killed group's last members are reaped by init
        left = still_running(tree)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return code, left, took


@contextmanager
def local_cluster(
    *,
    database_url: str,
    redis_url: str,
    run_dir: Path,
    replicas: int = 3,
    migrate: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[LocalCluster]:
    """``python -m server cluster`` until the block ends; then it must stop cleanly."""
    run_dir.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **ENV, **(env or {})}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environ.update(
        DATABASE_URL=database_url, REDIS_URL=redis_url, HOTPATH_DATA_DIR=str(run_dir / "data")
    )
    argv = [sys.executable, "-m", "server", "cluster", "--replicas", str(replicas),
            "--port", str(free_port()), "--run-dir", str(run_dir)]  # fmt: skip
    if migrate:
        argv.append("--migrate")
    with (run_dir / "cluster.out").open("wb") as out:
        process = subprocess.Popen(argv, env=environ, stdout=out, stderr=subprocess.STDOUT)
    cluster = LocalCluster(process, run_dir, database_url)
    stopped = False
    try:
        cluster.wait_until("the cluster is up", lambda state: state["ready"])
        yield cluster
        code, left, took = cluster.stop()
        stopped = True
        assert code == 0, f"the cluster exited with {code}:\n{cluster.output[-3000:]}"
        assert not left, f"processes left running after the cluster stopped: {left}"
        assert took < 60, f"the cluster took {took:.1f} s to stop"
    finally:
        if not stopped:
            cluster.stop()


@pytest.fixture(scope="session")
def cluster(migrated_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    redis = ThrowawayRedis()
    redis.start()
    try:
        with local_cluster(
            database_url=migrated_db,
            redis_url=redis.url,
            run_dir=tmp_path_factory.mktemp("cluster"),
        ) as running:
            yield running
    finally:
        redis.kill()


def session(cluster: LocalCluster, role: str = "customer") -> tuple[int, dict[str, str]]:
    """A new user of ``role``, logged in through nginx: its id and request headers."""
    user_id, email, password = asyncio.run(insert_user(cluster.database_url, role))
    return user_id, {"authorization": f"Bearer {login(cluster.url, email, password)}"}
