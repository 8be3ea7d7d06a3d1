"""The servers a run measures, each started the way production serves hotpath (granian, one
worker, uvloop, no access log) and stopped when its scenarios are done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


@contextmanager
def running(
    name: str, command: list[str], env: Mapping[str, str], *, ready_path: str, log: Path
) -> Iterator[Server]:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=output, stderr=output
        )
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


def hotpath_command() -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--host", HOST, "--port", "{port}"]


def asgi_command(target: str) -> list[str]:
    """A bare ASGI callable or the peer app, behind the very granian command hotpath uses."""
    command = granian_command(HOST, 0, 1, target=target)
    command[command.index("--port") + 1] = "{port}"
    return command
