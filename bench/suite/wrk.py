"""One wrk run against one server: its summary line, and the server's CPU time around it.

wrk is closed-loop: each connection sends its next request only when the last one answered,
so a slow server is offered less load (coordinated omission). The Artillery scenario is the
open-model counterpart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.suite.procs import cpu_seconds

LOAD_DIR = Path(__file__).resolve().parents[1] / "load"
_MARK = "BENCH_RESULT "


@dataclass(frozen=True)
class Load:
    seconds: float
    connections: int
    threads: int = 1


@dataclass(frozen=True)
class Measured:
    requests: int
    seconds: float
    http_errors: int  # answers with a status of 400 or more (what wrk counts)
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else float("inf")


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (make bench does it)")
    return path


def run(base: str, script: str, env: Mapping[str, str], load: Load, server_pid: int) -> Measured:
    command = [
        wrk_path(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        script,
        base,
    ]
    before = cpu_seconds(server_pid)
    done = subprocess.run(
        command,
        cwd=LOAD_DIR,  # the scripts `require "common"` from here
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=load.seconds + 60,
        check=False,
    )
    spent = cpu_seconds(server_pid) - before
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk {script} failed ({done.returncode}): {done.stderr[-2000:]}")
    raw = orjson.loads(lines[-1][len(_MARK) :])
    return Measured(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        http_errors=raw["status_errors"],
        socket_errors=raw["connect_errors"]
        + raw["read_errors"]
        + raw["write_errors"]
        + raw["timeouts"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        cpu_seconds=spent,
    )
