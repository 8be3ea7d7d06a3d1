"""``python -m server serve``: granian in a child process, with a drain period on SIGTERM.

On SIGTERM (or SIGINT) this process creates the drain file, so /readyz in every worker answers
503 while the load balancer takes the instance out, waits ``HOTPATH_DRAIN_SECONDS``, then asks
granian to stop: granian finishes the requests in flight and runs the lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from structlog.typing import FilteringBoundLogger

from server.health.service import DRAIN_FILE_ENV
from server.logs import flush_logs
from server.metrics import MULTIPROC_ENV
from server.seed import read_logins
from server.settings import Settings

# Slow clients must not hold a worker: headers within 10 s; idle keep-alive closes with them.
GRANIAN_TIMEOUT_FLAGS = ("--http1-header-read-timeout", "10000", "--workers-kill-timeout", "30")
DEMO_USERS = 1000


def granian_command(
    host: str, port: int, workers: int, target: str = "server.app:app_from_env()"
) -> list[str]:
    """How hotpath is served; ``target`` lets the benchmarks serve their peers the same way.
    A target ending in ``()`` is a factory."""
    factory = target.endswith("()")
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        # An asyncio Task per request, with a context of its own: the request's deadline and
        # request id live in context variables set without a reset (middleware/deadline.py).
        "--task-impl",
        "asyncio",
        *(("--factory",) if factory else ()),
        target.removesuffix("()"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backlog",
        "2048",
        "--no-access-log",
        "--log-level",
        "warning",
        "--respawn-failed-workers",
        *GRANIAN_TIMEOUT_FLAGS,
    ]


def serve_forever(
    settings: Settings,
    logger: FilteringBoundLogger,
    *,
    host: str | None,
    port: int | None,
    workers: int | None,
    prepare: bool,
) -> int:
    if prepare:
        from server.tasks import prepare as prepare_database

        settings = asyncio.run(prepare_database(settings, logger, users=DEMO_USERS))
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    runtime = Path(tempfile.mkdtemp(prefix="hotpath-"))
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.database_url
    env[DRAIN_FILE_ENV] = str(runtime / "draining")
    if workers > 1:
        metrics_dir = runtime / "metrics"
        metrics_dir.mkdir()
        env[MULTIPROC_ENV] = str(metrics_dir)
    if not settings.production:
        env.setdefault("HOTPATH_SECRET_KEY", settings.secret_key)
    child = subprocess.Popen(granian_command(host, port, workers), env=env)
    _announce(settings, host, port, workers, prepare)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while child.poll() is None and not stopping:
            time.sleep(0.1)
        if stopping and child.poll() is None:
            (runtime / "draining").touch()
            logger.info("draining", seconds=settings.drain_seconds)
            flush_logs()
            time.sleep(settings.drain_seconds)
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                child.kill()
        return 0 if stopping else (child.wait() or 0)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def _announce(settings: Settings, host: str, port: int, workers: int, demo: bool) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    base = f"http://{shown}:{port}" if ":" not in shown else f"http://[{shown}]:{port}"
    lines = [
        f"hotpath serving on {base} ({workers} worker{'s' if workers > 1 else ''})",
        f"  API docs:  {base}/docs",
        f"  OpenAPI:   {base}/openapi.json",
    ]
    logins = read_logins(settings.data_dir) if demo else {}
    if logins:
        lines.append("  demo logins (random per install, kept in .devdata/demo_logins.json):")
        lines += [f"    {email}  {password}" for email, password in logins.items()]
    print("\n".join(lines), flush=True)
