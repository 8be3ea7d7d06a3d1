"""The servers a run measures, each started the way production serves hotpath (granian, one
worker, uvloop, its access log on at info level) and stopped when its scenarios are done.

A server's stdout is a pipe read by a process of its own (grep), as a container runtime reads
it: the access log costs the server what it costs in production (a write to a pipe), and only
the lines that are not access lines are kept in the run's log file (a run answers millions of
requests).

Not a thread of the bench's process: the open-model generator (bench/suite/openloop.py) runs
in that process, and a reader thread gets the GIL from a busy main thread only about once per
switch interval. Measured (2026-12-07, 400-byte lines): such a thread drained about 17,000
lines a second while the main thread ran Python, 2.5 million while it slept; grep drained
4.8 million either way. The warm read's open-model rates are 9,000 to 15,000 lines a second:
the 64 KiB pipe (about 20 ms of them) filled, the server's write(2) blocked its event loop, and
the stall was counted as its latency (a sampler on hotpath's loop found most of its stalls,
46-90% of the samples in four runs, in LineBuffer.flush's write)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from server.commands.serve import granian_command

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    name: str
    base: str
    pid: int


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_answering(
    base: str, path: str, process: subprocess.Popen[bytes], *, deadline: float | None = None
) -> None:
    """Until ``base + path`` answers below 500: 60 s, or until ``deadline`` (monotonic)."""
    deadline = time.monotonic() + 60 if deadline is None else deadline
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{base} exited with {process.returncode} while starting")
        try:
            if httpx.get(base + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not answer in time")


_ACCESS_LINE = '"message":"http_request"'


def _stdout_reader(log: Path) -> subprocess.Popen[bytes]:
    """A process that reads a server's stdout to its end, keeping what is not an access line."""
    with log.open("ab") as output:
        return subprocess.Popen(
            ["grep", "--invert-match", "--fixed-strings", "--line-buffered", _ACCESS_LINE],
            stdin=subprocess.PIPE,
            stdout=output,
        )


@contextmanager
def running(
    name: str,
    command: list[str],
    env: Mapping[str, str],
    *,
    ready_path: str,
    log: Path,
    cwd: Path = ROOT,
) -> Iterator[Server]:
    """``command`` serving on a free port until the block ends; ``cwd`` is the source tree it
    imports from (``python -m`` puts it first on the path)."""
    with _started(command, env, free_port(), log=log, cwd=cwd) as (process, base):
        _wait_until_answering(base, ready_path, process)
        yield Server(name, base, process.pid)


@contextmanager
def running_all(
    starts: Mapping[str, tuple[list[str], Mapping[str, str], str]],
    *,
    log: Path,
    cwd: Path = ROOT,
) -> Iterator[dict[str, Server]]:
    """Like ``running`` for each of ``starts`` (name: command, environment, ready path), all
    until the block ends; every one is started before any is waited for, so their start-ups
    (a few seconds of imports each) overlap instead of adding up."""
    ports: set[int] = set()
    while len(ports) < len(starts):  # none bound yet: two free_port() calls could agree
        ports.add(free_port())
    with ExitStack() as stack:
        started = {
            name: stack.enter_context(_started(command, env, port, log=log, cwd=cwd))
            for (name, (command, env, _)), port in zip(starts.items(), sorted(ports), strict=True)
        }
        # As long as one after the other would have had: 60 s each (they share the CPUs).
        deadline = time.monotonic() + 60 * len(starts)
        servers: dict[str, Server] = {}
        for name, (process, base) in started.items():
            _wait_until_answering(base, starts[name][2], process, deadline=deadline)
            servers[name] = Server(name, base, process.pid)
        yield servers


@contextmanager
def _started(
    command: list[str], env: Mapping[str, str], port: int, *, log: Path, cwd: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``command`` started on ``port`` (not yet answering), stopped when the block ends."""
    command = [part.replace("{port}", str(port)) for part in command]
    reader = _stdout_reader(log)
    assert reader.stdin is not None
    with log.open("ab") as errors, reader.stdin:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=reader.stdin,
            stderr=errors,
        )
    try:
        yield process, f"http://{HOST}:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            reader.wait(timeout=10)  # the server's last lines, then the pipe's end
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()


def hotpath_command() -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--host", HOST, "--port", "{port}"]


def asgi_command(target: str) -> list[str]:
    """A bare ASGI callable or the peer app, behind the very granian command hotpath uses."""
    command = granian_command(HOST, 0, 1, target=target)
    command[command.index("--port") + 1] = "{port}"
    return command
