"""granian's own log lines, with the logging configuration ``serve`` gives it, come out on
stdout as the same JSON as hotpath's (ECS names), not as granian's plain text."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import pytest

from server.commands.serve import GRANIAN_LOG_CONFIG
from tests.fixtures.support import free_port

pytestmark = pytest.mark.slow


def answered(url: str, process: subprocess.Popen[Any]) -> None:
    """Once granian answers (an empty Starlette app: 404), its start-up lines are written."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"granian exited with {process.returncode}"
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("granian did not answer")


def test_granian_logs_json_lines_on_stdout() -> None:
    port = free_port()
    command = [
        *("-m", "granian", "--interface", "asgi", "--factory"),
        # An empty Starlette app: granian's lines are the subject, not hotpath's.
        "starlette.applications:Starlette",
        *("--port", str(port), "--log-level", "info", "--log-config", str(GRANIAN_LOG_CONFIG)),
    ]
    process = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        answered(f"http://127.0.0.1:{port}/", process)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert err == b""
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert lines, "granian logged nothing at info"
    assert all(line["log.logger"].startswith("_granian") for line in lines)
    assert all(line["log.level"] == "info" for line in lines)
    assert any("granian" in line["message"].lower() for line in lines)
    assert all(line["ecs.version"] == "8.11.0" for line in lines)
