"""One soak run: the bench's mixed load (bench/load/mixed.lua: 80% product reads, 10% list
pages, 10% orders) against one hotpath server for a fixed time, in back-to-back wrk windows;
halfway through each window the server's memory, descriptors and pool are sampled, so what is
recorded is the server under load."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak.sample import Pool, Process, pool, process
from bench.suite import setup
from bench.suite.servers import Server, hotpath_command, running
from bench.suite.wrk import Load, Measured, run
from server.auth.keys import generate_dev_key

SCRIPT = "mixed.lua"


@dataclass(frozen=True)
class Options:
    minutes: float = 30.0
    interval: float = 10.0  # seconds per load window, and so between two samples
    warmup: float = 20.0  # seconds of load before the first window: caches fill, pools open
    connections: int = 16
    products: int = 10_000
    accounts: int = 20
    # Access tokens live 15 minutes (HOTPATH_ACCESS_TOKEN_TTL below): fresh ones well before.
    relogin_seconds: float = 600.0


@dataclass(frozen=True)
class Window:
    index: int
    at: float  # seconds since the first window began
    measured: Measured
    process: Process
    pool: Pool


@dataclass
class Soak:
    started: str
    options: Options
    windows: list[Window] = field(default_factory=list)
    relogins: int = 0


def server_env(workdir: Path, database_url: str) -> dict[str, str]:
    """hotpath as production runs it (as `make bench` serves it), budgets above the load."""
    keys = workdir / "jwt"
    generate_dev_key(keys, "EdDSA")
    return {
        "HOTPATH_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_JWT_KEYS_DIR": str(keys),
        "HOTPATH_DATA_DIR": str(workdir / "data"),
        "HOTPATH_ACCESS_LOG": "false",
        "HOTPATH_ACCESS_TOKEN_TTL": "900",
        "HOTPATH_DRAIN_SECONDS": "0",
        "HOTPATH_LOG_LEVEL": "warning",
        "HOTPATH_RATE_LIMIT_READ": "100000/1",
        "HOTPATH_RATE_LIMIT_WRITE": "100000/1",
        "HOTPATH_RATE_LIMIT_AUTH": "100000/1",
    }


class _MidWindowSample:
    """Samples the server once, ``delay`` seconds after it starts (in a thread)."""

    def __init__(self, base: str, pid: int, delay: float) -> None:
        self.base, self.pid, self.delay = base, pid, delay
        self.result: tuple[Process, Pool] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        time.sleep(self.delay)
        try:
            self.result = (process(self.pid), pool(self.base))
        except Exception as exc:  # reported by wait()
            self.error = exc

    def wait(self) -> tuple[Process, Pool]:
        self._thread.join()
        if self.result is None:
            raise RuntimeError(f"sampling the server failed: {self.error!r}")
        return self.result


def run_soak(options: Options, on_window: Callable[[Window], None] | None = None) -> Soak:
    soak = Soak(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), options)
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-soak-"))
    log = workdir / "servers.log"
    try:
        with setup.bench_database() as url:
            accounts = setup.prepare_database(
                url, products=options.products, accounts=options.accounts
            )
            env = server_env(workdir, url)
            with running(
                "hotpath", hotpath_command(), env, ready_path="/readyz", log=log
            ) as server:
                _load(soak, server, accounts, workdir / "tokens.txt", on_window)
    except BaseException:
        print(f"soak failed; the server's log is kept: {log}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return soak


def _load(
    soak: Soak,
    server: Server,
    accounts: list[setup.Account],
    tokens: Path,
    on_window: Callable[[Window], None] | None,
) -> None:
    options = soak.options
    setup.write_lines(tokens, setup.log_in(server.base, accounts))
    load_env = {"BENCH_TOKENS": str(tokens), "BENCH_PRODUCTS": str(options.products)}
    if options.warmup > 0:
        run(server.base, SCRIPT, load_env, Load(options.warmup, options.connections), server.pid)
    window_load = Load(options.interval, options.connections)
    start = last_login = time.monotonic()
    while time.monotonic() - start < options.minutes * 60:
        if time.monotonic() - last_login > options.relogin_seconds:
            setup.write_lines(tokens, setup.log_in(server.base, accounts))
            last_login = time.monotonic()
            soak.relogins += 1
        at = time.monotonic() - start
        sampler = _MidWindowSample(server.base, server.pid, options.interval / 2)
        measured = run(server.base, SCRIPT, load_env, window_load, server.pid)
        sampled, pool_state = sampler.wait()
        window = Window(len(soak.windows), at, measured, sampled, pool_state)
        soak.windows.append(window)
        if on_window is not None:
            on_window(window)
