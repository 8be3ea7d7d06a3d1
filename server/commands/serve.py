"""``python -m server serve``: granian in a child process, with a drain period on SIGTERM.

Before granian starts, this process checks what would make every worker fail (the signing key
ring; in development it generates the key, once). On SIGTERM (or SIGINT) it creates the drain
file, so /readyz in every worker answers 503 while the load balancer takes the instance out,
waits ``HOTPATH_DRAIN_SECONDS``, then asks granian to stop: granian finishes the requests in
flight and runs the lifespan shutdown, killing a worker that takes over WORKERS_KILL_TIMEOUT.
A container's stop grace period must cover both (compose.yaml).

``--with-worker`` (``make run``) also runs ``python -m server worker`` beside granian, so one
command sends the mails (``.eml`` files without HOTPATH_SMTP_URL) and webhooks the requests
queue; deployments run the worker as a service of its own (compose.yaml, deploy/k8s/).
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from structlog.typing import FilteringBoundLogger

from server.auth.keys import KeyRingError
from server.auth.setup import load_keys
from server.commands.seed import logins_file, missing_logins_hint, read_logins
from server.health.service import DRAIN_FILE_ENV, STARTED_DIR_ENV
from server.runtime.logs import flush_logs
from server.runtime.metrics import MULTIPROC_ENV
from server.runtime.settings import Settings, SettingsError

WORKERS_KILL_TIMEOUT = 30
# Slow clients must not hold a worker: headers within 10 s; idle keep-alive closes with them.
GRANIAN_TIMEOUT_FLAGS = (
    "--http1-header-read-timeout",
    "10000",
    "--workers-kill-timeout",
    str(WORKERS_KILL_TIMEOUT),
)
DEMO_USERS = 1000
GRANIAN_LOG_CONFIG = Path(__file__).parents[1] / "runtime" / "granian-logging.json"


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
        # granian's own lines as hotpath's JSON on stdout (server/runtime/logs.py)
        "--log-config",
        str(GRANIAN_LOG_CONFIG),
        "--respawn-failed-workers",
        *GRANIAN_TIMEOUT_FLAGS,
    ]


def startup_problems(settings: Settings) -> list[str]:
    """What would make every worker fail as it starts, found before any starts."""
    try:
        # In development this also generates the key, before the workers race to read it.
        load_keys(settings)
    except (KeyRingError, OSError) as error:
        return [f"token signing keys: {error}"]
    return []


def serve_forever(
    settings: Settings,
    logger: FilteringBoundLogger,
    *,
    host: str | None,
    port: int | None,
    workers: int | None,
    prepare: bool,
    reuse_port: bool = False,
    with_worker: bool = False,
) -> int:
    """Serve until SIGTERM or SIGINT; raises SettingsError, before starting anything, when
    the server could not start.

    A port something already listens on is such a problem unless ``reuse_port`` says the
    operator means to share it: granian binds with SO_REUSEPORT, so a second server on a taken
    port would otherwise share it with the first, each answering every other request (with
    its own signing key in development).
    """
    problems = startup_problems(settings)
    if problems:
        raise SettingsError(problems)
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    if not reuse_port and port_in_use(host, port):
        raise SettingsError(
            [
                f"{host} port {port} is already in use by another process: stop it, choose "
                "another port (--port, HOTPATH_PORT), or pass --reuse-port to share it"
            ]
        )
    if prepare:
        from server.commands.tasks import prepare as prepare_database

        settings = asyncio.run(prepare_database(settings, logger, users=DEMO_USERS))
    workers = settings.workers if workers is None else workers
    runtime = Path(tempfile.mkdtemp(prefix="hotpath-"))
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.database_url
    # The workers' own settings then know the port they serve (--port may differ from
    # HOTPATH_PORT), and an unset HOTPATH_PUBLIC_URL (the base of the links in mails) follows it.
    env["HOTPATH_PORT"] = str(port)
    env[DRAIN_FILE_ENV] = str(runtime / "draining")
    started = runtime / "started"
    started.mkdir()
    env[STARTED_DIR_ENV] = str(started)
    if workers > 1:
        metrics_dir = runtime / "metrics"
        metrics_dir.mkdir()
        env[MULTIPROC_ENV] = str(metrics_dir)
    if not settings.production:
        env.setdefault("HOTPATH_SECRET_KEY", settings.secret_key)
    child = subprocess.Popen(granian_command(host, port, workers), env=env)
    worker = _start_worker(env) if with_worker else None
    local = _local_address(host)
    announced = False
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while child.poll() is None and not stopping:
            # Announced once a worker of this server has started and the port answers, so
            # the banner never tells of a server that then fails to start (nor of another
            # process sharing the port).
            if not announced and any(started.iterdir()) and _answers(local, port):
                _announce(settings, logger, local, port, workers, prepare)
                announced = True
            if worker is not None and worker.poll() is not None:
                print(f"hotpath: the worker exited with {worker.returncode}", file=sys.stderr)
                worker = None
            time.sleep(0.1)
        if stopping and child.poll() is None:
            (runtime / "draining").touch()
            logger.info("draining", seconds=settings.drain_seconds)
            flush_logs()
            time.sleep(settings.drain_seconds)
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=WORKERS_KILL_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                child.kill()
        if worker is not None:
            _stop_worker(worker, settings.webhook_timeout + 5)
            worker = None
        if stopping:
            return 0
        code = child.wait()
        if not announced:
            print(f"hotpath did not start: granian exited with {code}", file=sys.stderr)
        return code or 0
    finally:
        if worker is not None:
            _stop_worker(worker, settings.webhook_timeout + 5)
        shutil.rmtree(runtime, ignore_errors=True)


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its metrics are its own (HOTPATH_WORKER_METRICS_PORT), not granian's shared folder.
    worker_env = {k: v for k, v in env.items() if k != MULTIPROC_ENV}
    return subprocess.Popen([sys.executable, "-m", "server", "worker"], env=worker_env)


def _stop_worker(worker: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM: it finishes or releases what it is sending; killed after ``timeout``."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host``:``port`` fails because something listens there (a bind
    without SO_REUSEPORT fails even against a listener that set it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers bind: a connection of an earlier server left in TIME_WAIT is no owner.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def _local_address(host: str) -> str:
    """Where this machine reaches a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


def _answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        connection.request("GET", "/livez", headers={"user-agent": "hotpath-serve"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _announce(
    settings: Settings,
    logger: FilteringBoundLogger,
    host: str,
    port: int,
    workers: int,
    demo: bool,
) -> None:
    """A banner for a person at a terminal; for anything else (a container's log, a pipe) a
    JSON line like every other, with no demo password in it."""
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    logins = read_logins(settings.data_dir) if demo else {}
    if not sys.stdout.isatty():
        logger.info(
            "serving",
            url=base,
            workers=workers,
            docs=f"{base}/docs",
            openapi=f"{base}/openapi.json",
            demo_logins=str(logins_file(settings.data_dir)) if logins else None,
        )
        flush_logs()
        return
    lines = [
        f"hotpath serving on {base} ({workers} worker{'s' if workers > 1 else ''})",
        f"  API docs:  {base}/docs",
        f"  OpenAPI:   {base}/openapi.json",
    ]
    if logins:
        where = logins_file(settings.data_dir)
        lines.append(f"  demo logins (random per install, kept in {where}):")
        lines += [f"    {email}  {password}" for email, password in logins.items()]
    elif demo:
        lines.append(f"  {missing_logins_hint(settings.data_dir)}")
    print("\n".join(lines), flush=True)
