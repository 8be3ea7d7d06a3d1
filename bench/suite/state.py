"""What one benchmark run carries: its options, its outcomes, and the run itself (servers
started and measured, files written, profiles taken), shared by every phase of bench/suite/."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suite import setup
from bench.suite.procs import RssSampler, rss_bytes, tree
from bench.suite.profiles import Profile, profile, py_spy
from bench.suite.servers import Server, running
from bench.suite.wrk import Load, Measured, run
from server.auth.keys import generate_dev_key


@dataclass(frozen=True)
class Options:
    seconds: float = 15.0  # wrk takes whole seconds
    warmup: float = 3.0  # 0: none
    connections: int = 16
    # Connections per pool of every server the run starts (hotpath's, the ceilings', the
    # peers'): 10 is hotpath's default. The smoke run, inside the test suite, takes fewer so
    # the shared PostgreSQL's 100 connections hold it and the tests beside it.
    pool_size: int = 10
    products: int = 10_000
    hot_products: int = 2_000  # product_get's ids: all of them stay in the local cache
    accounts: int = 50
    deep_pages: int = 100
    artillery_rate: int = 4
    artillery_seconds: int = 30
    artillery: bool = True
    # The budget's ratios: the ceiling and the budgeted reads measured in alternation, so a
    # box that gets slower or faster over the run moves both sides of each ratio alike.
    budget_rounds: int = 5
    budget_seconds: float = 6.0
    webhook_events: int = 5000  # 0: no webhook delivery run
    login_seconds: float = 0.0  # the login scenario is measured at least this long
    # The open-model run of the warm read (bench/suite/open_model.py): these shares of the peak
    # wrk measured, each offered for openloop_rounds rounds of openloop_seconds to hotpath and,
    # at the same rate and in alternation, to the box's floors; () for none.
    openloop_shares: tuple[float, ...] = (0.5, 0.8)
    openloop_rounds: int = 3
    openloop_seconds: float = 3.0
    # Offered at the same rate first, not counted: the connections are opened in it (the first
    # second at 9,400 req/s held most of the run's requests over 10 ms, 2026-12-07).
    openloop_warmup: float = 1.0
    # py-spy profiles (bench/suite/profiles.py) of these hotpath scenarios, each recorded for
    # profile_seconds twice (flame graph, raw stacks) after its measurement; () for none.
    profile_scenarios: tuple[str, ...] = (
        "ping",
        "product_get",
        "product_list_first",
        "order_place",
        "product_get_nocache",
    )
    profile_seconds: float = 5.0

    def order_products(self) -> dict[str, str]:
        """The product ids the order scenarios buy (bench/load/order_place.lua): those above
        the warm read's ``hot_products``, so that no order invalidates a copy the warm read
        keeps cached. With orders among all ids, the warm read measured right after 3 s of
        orders on the same server cost a median 22.6 µs a request more than just before them
        (six paired rounds, five of them +12 to +37 µs; 2026-12-07, a busy box), its invalidated
        copies read again; with orders above the hot range, -8 µs (-30 to +41: noise). The
        budget rounds measure product_get after the previous round's orders."""
        first = self.hot_products + 1 if self.products > self.hot_products else 1
        return {"BENCH_PRODUCTS": str(self.products), "BENCH_FIRST_PRODUCT": str(first)}


@dataclass(frozen=True)
class Outcome:
    name: str
    server: str
    ceiling: str | None
    description: str
    measured: Measured


@dataclass
class Results:
    started: str
    options: Options
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    # The largest process's RSS once a server's scenarios are over: what it holds between
    # logins, without argon2id's working memory (64 MiB per hash in flight).
    end_rss: dict[str, int] = field(default_factory=dict)
    # The largest process's peak RSS while each scenario was measured (and over the budget
    # rounds): what the RSS budget is outside logins (bench/suite/rss.py).
    scenario_rss: dict[str, int] = field(default_factory=dict)
    artillery: dict[str, object] | None = None
    artillery_skipped: str | None = None
    # One dict per interleaved round: server name -> CPU µs per request.
    budget_rounds: list[dict[str, float]] = field(default_factory=list)
    webhooks: dict[str, object] | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    # One row per share of the peak and target (hotpath's product_get and its floors), each
    # pooled over the rounds (bench/suite/open_model.py).
    open_model: list[dict[str, Any]] = field(default_factory=list)
    profiles_skipped: str | None = None


class Run:
    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.log = workdir / "servers.log"
        self.results = Results(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), options)
        # One key for every server of the run: the list ceiling verifies and signs cursors
        # with it, so a cursor from hotpath works on the ceiling and back.
        self.secret = secrets.token_urlsafe(32)

    def file(self, name: str, lines: list[str]) -> str:
        return str(setup.write_lines(self.workdir / name, lines))

    def measure(
        self,
        server: Server,
        name: str,
        script: str,
        env: dict[str, str],
        *,
        ceiling: str | None,
        description: str,
        connections: int | None = None,
        at_least: float = 0.0,
    ) -> None:
        options = self.options
        conns = connections or options.connections
        seconds = max(options.seconds, at_least)
        if options.warmup > 0:
            run(server.base, script, env, Load(options.warmup, conns), server.pid)
        # After the warm-up: the logins still hashing when the login scenario's wrk stops
        # finish in the next scenario's warm-up, not in its window.
        sampler = RssSampler(server.pid).start()
        try:
            measured = run(server.base, script, env, Load(seconds, conns), server.pid)
        finally:
            self.results.scenario_rss[name] = sampler.stop()
        self.results.outcomes.append(Outcome(name, server.name, ceiling, description, measured))
        if name in options.profile_scenarios:
            self.profile(server, name, script, env, conns)

    def profile(
        self, server: Server, name: str, script: str, env: dict[str, str], connections: int
    ) -> None:
        if py_spy() is None:
            self.results.profiles_skipped = "py-spy is not installed (it is in the dev extra)"
            return
        load = Load(self.options.profile_seconds, connections)
        try:
            self.results.profiles[name] = profile(
                server.base, script, env, load, server.pid, self.workdir / "profiles", name
            )
        except subprocess.CalledProcessError as exc:
            # Typically ptrace refused (a container without CAP_SYS_PTRACE): the run's numbers
            # stand without the profiles, and the report says why.
            reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            self.results.profiles_skipped = f"py-spy failed: {reason[-1] if reason else exc}"

    def serve(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        ready: str,
        body: Callable[[Server], None],
    ) -> None:
        with running(name, command, env, ready_path=ready, log=self.log) as server:
            sampler = RssSampler(server.pid).start()
            try:
                body(server)
            finally:
                self.results.peak_rss[name] = sampler.stop()
                self.results.end_rss[name] = max(rss_bytes(pid) for pid in tree(server.pid))


def hotpath_env(state: Run, url: str) -> dict[str, str]:
    keys = state.workdir / "jwt"
    if not keys.exists():
        generate_dev_key(keys, "EdDSA")
    return {
        "HOTPATH_ENV": "production",
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "HOTPATH_SECRET_KEY": state.secret,
        "HOTPATH_JWT_KEYS_DIR": str(keys),
        "HOTPATH_DATA_DIR": str(state.workdir / "data"),
        # The production configuration: every budget counts the access log at info level.
        "HOTPATH_ACCESS_LOG": "true",
        "HOTPATH_ACCESS_TOKEN_TTL": "900",
        "HOTPATH_DRAIN_SECONDS": "0",
        "HOTPATH_LOG_LEVEL": "info",
        "HOTPATH_DB_POOL_MAX": str(state.options.pool_size),
        "HOTPATH_DB_POOL_MIN": str(min(2, state.options.pool_size)),
        # The limiter runs (its cost is part of every number) but never says no to the load.
        "HOTPATH_RATE_LIMIT_READ": "100000/1",
        "HOTPATH_RATE_LIMIT_WRITE": "100000/1",
        "HOTPATH_RATE_LIMIT_AUTH": "100000/1",
    }
