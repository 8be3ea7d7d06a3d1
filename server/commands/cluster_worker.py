"""The local cluster's worker (``python -m server worker``): one process beside the replicas,
sending their webhooks and mail, with its metrics on a loopback port of its own that the
cluster's Prometheus scrapes as the ``worker`` job (deploy/prometheus/prometheus.yml). Started
again, on a new port, if it exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.commands import supervision

START_TIMEOUT = 30.0  # until its metrics port answers
STOP_TIMEOUT = 30.0  # HOTPATH_WEBHOOK_TIMEOUT (10 s) + 1 s to finish what is in flight, and more


@dataclass
class ClusterWorker:
    env: dict[str, str]
    run_dir: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.run_dir / f"worker.{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.port = supervision.free_port()
        env = {
            **self.env,
            "HOTPATH_HOST": "127.0.0.1",
            "HOTPATH_WORKER_METRICS_PORT": str(self.port),
        }
        self.process = supervision.spawn(
            [sys.executable, "-m", "server", "worker"], log=self.log, env=env
        )

    def wait_ready(self, stopped: Callable[[], bool]) -> bool:
        """Whether its metrics answer within START_TIMEOUT (False: it exited, or a stop)."""
        deadline = time.monotonic() + START_TIMEOUT
        while self.process is not None and self.process.poll() is None:
            answer = supervision.get(self.port, "/metrics")
            if answer is not None and answer[0] == 200:
                return True
            if stopped() or time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return False

    def exited(self) -> int | None:
        """Its exit code once it has exited (then it is gone: start another), else None."""
        if self.process is None or (code := self.process.poll()) is None:
            return None
        supervision.kill_group(self.process.pid)
        self.process = None
        return code

    def stop(self, hurry: Callable[[], bool]) -> None:
        if self.process is not None:
            supervision.stop(self.process, signal.SIGTERM, timeout=STOP_TIMEOUT, hurry=hurry)

    def view(self) -> dict[str, object]:
        return {
            "pid": self.process.pid if self.process is not None else None,
            "metrics_url": f"http://{self.address}/metrics",
            "log": str(self.log),
            "starts": self.starts,
        }
