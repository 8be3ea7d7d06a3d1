"""The servers a run measures, each started the way production serves hotpath (granian, one
worker, uvloop, its access log on at info level) and stopped when its scenarios are done.

A server's stdout is a pipe read by a thread here, as a container runtime reads it: the access
log costs the server what it costs in production (a write to a pipe), and only the lines that
are not access lines are kept in the run's log file (a run answers millions of requests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


def _wait_until_answering(base: str, path: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{base} exited with {process.returncode} while starting")
        try:
            if httpx.get(base + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not answer within 60 s")


_ACCESS_LINE = b'"message":"http_request"'


def _drain(pipe: IO[bytes], log: Path) -> None:
    """Read a server's stdout to its end, keeping what is not an access line."""
    with pipe, log.open("ab") as output:
        for line in pipe:
            if _ACCESS_LINE not in line:
                output.write(line)


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
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with log.open("ab") as errors:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    assert process.stdout is not None
    drain = threading.Thread(target=_drain, args=(process.stdout, log), daemon=True)
    drain.start()
    base = f"http://{HOST}:{port}"
    try:
        _wait_until_answering(base, ready_path, process)
        yield Server(name, base, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drain.join(timeout=10)


def hotpath_command() -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--host", HOST, "--port", "{port}"]


def asgi_command(target: str) -> list[str]:
    """A bare ASGI callable or the peer app, behind the very granian command hotpath uses."""
    command = granian_command(HOST, 0, 1, target=target)
    command[command.index("--port") + 1] = "{port}"
    return command
