"""``python -m bench.suite.scaling`` (``make bench-scaling``): what one request of each endpoint
class costs the parts that do not scale with hotpath's replicas, for the scaling model of
docs/scaling.md.

One hotpath server in the production configuration (one worker, bench/suite/state.py's
environment) on a private database of the shared PostgreSQL, as ``make bench`` runs it, and a
redis-server of its own on a free port (the shared one's counters move with everyone's tests).
Per scenario (a warm product read; the same from ever new client addresses; the first list
page; an order; a product read with the cache off, on a second server), after every
scenario's warm-up: wrk for ``seconds``, then PostgreSQL's and Redis's counters read again once
PostgreSQL has flushed them (bench/suite/resources.py). An idle window of the same server first
says what it costs with no request at all (the revocation poll, the cache's heartbeat), which
is taken off each scenario's figures.

About three minutes here; ``--smoke`` takes about as long, most of it waiting for PostgreSQL's
counters, and proves only that every part still runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.suite import setup
from bench.suite.resources import (
    Snapshot,
    Window,
    database_facts,
    settle,
    snapshot,
    wal_kept,
    wal_of_database,
    window,
)
from bench.suite.servers import ROOT, Server, hotpath_command, running
from bench.suite.state import Options, Run, hotpath_env
from bench.suite.wrk import Load, Measured, run
from server.runtime.settings import Settings
from tests.fixtures.support import ThrowawayRedis

RESULTS = Path(__file__).resolve().parents[1] / "results"


@dataclass(frozen=True)
class ScalingOptions:
    # Bounded to about 3 minutes on a busy 2-core box, a minute of it waiting for PostgreSQL
    # to flush its counters; the accounts' argon2 hashes (production cost) are the set-up's.
    seconds: float = 8.0
    warmup: float = 2.0
    connections: int = 16
    products: int = 2_000  # every one of them stays in the local cache once read
    accounts: int = 4
    idle_seconds: float = 8.0
    # "transaction": every server as behind PgBouncer in transaction mode
    # (HOTPATH_DB_POOLER=transaction: asyncpg's statement cache off), straight to PostgreSQL,
    # so the figures say what that mode costs PostgreSQL (PgBouncer's own CPU not included).
    pooler: str = "none"


SMOKE = ScalingOptions(seconds=1, warmup=1, connections=4, products=200, accounts=2, idle_seconds=1)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    measured: Measured
    window: Window
    wal_database: int | str  # bytes, or why pg_waldump could not say


# name, description, wrk script, its environment
_Planned = tuple[str, str, str, dict[str, str]]


@dataclass
class ScalingResults:
    started: str
    commit: str
    changed: list[str]  # files of server/ and sql/ that differ from the commit (a shared tree)
    options: ScalingOptions
    pool_max: int
    idle: Window | None = None
    idle_wal_database: int | str = 0
    scenarios: list[Scenario] = dataclasses.field(default_factory=list)


class _Meter:
    """Takes the snapshots of one run: the database's and Redis's counters."""

    def __init__(self, url: str, redis: ThrowawayRedis) -> None:
        assert redis.process is not None
        self.database = urlsplit(url).path.lstrip("/")
        self.redis_port, self.redis_pid = redis.port, redis.process.pid
        self.oid, self.data_dir, self.timeline = database_facts(self.database)

    def read(self) -> Snapshot:
        return snapshot(self.database, self.redis_port, self.redis_pid)

    def wal(self, part: Window) -> int | str:
        return wal_of_database(self.data_dir, self.timeline, self.oid, part.wal_start, part.wal_end)


def run_scaling(options: ScalingOptions) -> ScalingResults:
    commit, changed = _source_state()
    results = ScalingResults(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=commit,
        changed=changed,
        options=options,
        pool_max=_default_pool_max(),
    )
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-scaling-"))
    redis = ThrowawayRedis()
    redis.start()
    try:
        with setup.bench_database() as url:
            accounts = setup.prepare_database(
                url, products=options.products, accounts=options.accounts
            )
            meter = _Meter(url, redis)
            state = Run(Options(), workdir)
            env = {
                **hotpath_env(state, url),
                "REDIS_URL": redis.url,
                "HOTPATH_WORKERS": "1",
                # The loopback is the proxy: warm_read_clients' X-Forwarded-For is believed.
                "HOTPATH_TRUSTED_PROXIES": "127.0.0.1/32",
            }
            if options.pooler != "none":
                env |= {"HOTPATH_DB_POOLER": options.pooler, "HOTPATH_DATABASE_DIRECT_URL": url}
            log = workdir / "servers.log"
            with running("hotpath", hotpath_command(), env, ready_path="/readyz", log=log) as s:
                _cached(s, state, accounts, meter, results)
            nocache = {**env, "HOTPATH_PRODUCT_CACHE_SECONDS": "0"}
            with running("nocache", hotpath_command(), nocache, ready_path="/readyz", log=log) as s:
                _uncached(s, state, accounts, meter, results)
        shutil.rmtree(workdir)  # kept after a failure: servers.log says what went wrong
    finally:
        redis.kill()
    return results


def _default_pool_max() -> int:
    """HOTPATH_DB_POOL_MAX's default, which the bench's production environment keeps."""
    found = next(field for field in dataclasses.fields(Settings) if field.name == "db_pool_max")
    assert isinstance(found.default, int)
    return found.default


def _cached(
    server: Server,
    state: Run,
    accounts: list[setup.Account],
    meter: _Meter,
    results: ScalingResults,
) -> None:
    options = results.options
    tokens = state.file("tokens.txt", setup.log_in(server.base, accounts))
    first, _ = setup.list_paths(server.base, deep_pages=0)
    products = {"BENCH_PRODUCTS": str(options.products), "BENCH_TOKENS": tokens}
    scenarios: list[_Planned] = [
        ("warm_read", "GET /v1/products/{id}, JWT, product cache warm", "product_get.lua",
         products),
        ("warm_read_clients", "the same read anonymous, each from a random one of 1,000,000 "
         "client addresses: the limiter's worst case", "product_get_clients.lua",
         {"BENCH_PRODUCTS": str(options.products), "BENCH_CLIENTS": "1000000"}),
        ("list_page", "GET /v1/products?limit=50, first page, anonymous", "paths.lua",
         {"BENCH_PATHS": state.file("first.txt", [first])}),
        ("order", "POST /v1/orders, one item, a fresh Idempotency-Key each", "order_place.lua",
         products),
    ]  # fmt: skip
    # Every scenario warmed up first (the statements prepared on each pool connection), so one
    # wait for PostgreSQL's counters serves every warm-up; then every product read once, last,
    # so that all are in the local cache (30 s) through the warm read: a warm-up of a few
    # seconds on a busy box misses some, and each is then read from Redis or PostgreSQL.
    _warm_up(server, scenarios, options)
    _read_every_product(server.base, options.products, Path(tokens).read_text().split()[0])
    settle()
    with wal_kept():
        before = meter.read()
        time.sleep(options.idle_seconds)
        results.idle = window(before, meter.read())
        results.idle_wal_database = meter.wal(results.idle)
    _measure_each(server, meter, scenarios, results)


def _uncached(
    server: Server,
    state: Run,
    accounts: list[setup.Account],
    meter: _Meter,
    results: ScalingResults,
) -> None:
    options = results.options
    tokens = state.file("tokens-nocache.txt", setup.log_in(server.base, accounts))
    environment = {"BENCH_PRODUCTS": str(options.products), "BENCH_TOKENS": tokens}
    scenarios: list[_Planned] = [
        ("uncached_read", "GET /v1/products/{id}, JWT, product cache off: PostgreSQL",
         "product_get.lua", environment),
    ]  # fmt: skip
    _warm_up(server, scenarios, options)
    settle()
    _measure_each(server, meter, scenarios, results)


def _warm_up(server: Server, scenarios: list[_Planned], options: ScalingOptions) -> None:
    for _, _, script, environment in scenarios:
        _load(server, script, environment, options.warmup, options.connections)


def _measure_each(
    server: Server, meter: _Meter, scenarios: list[_Planned], results: ScalingResults
) -> None:
    """Each scenario in turn, with PostgreSQL's and Redis's counters around it."""
    options = results.options
    for name, description, script, environment in scenarios:
        with wal_kept():
            before = meter.read()
            measured = _load(server, script, environment, options.seconds, options.connections)
            settle()
            part = window(before, meter.read())
            results.scenarios.append(Scenario(name, description, measured, part, meter.wal(part)))


def _read_every_product(base: str, products: int, token: str) -> None:
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}) as client:
        for product in range(1, products + 1):
            client.get(f"/v1/products/{product}").raise_for_status()


def _load(
    server: Server, script: str, environment: dict[str, str], seconds: float, connections: int
) -> Measured:
    return run(server.base, script, environment, Load(seconds, connections), server.pid)


def _source_state() -> tuple[str, list[str]]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = git("status", "--porcelain", "--", "server", "sql").splitlines()
    return git("rev-parse", "--short", "HEAD"), [line[3:] for line in changed]


def main(argv: list[str]) -> int:
    from bench.suite.scaling_report import write

    parser = argparse.ArgumentParser(prog="python -m bench.suite.scaling", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a second per scenario")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--seconds", type=float, help="measured seconds per scenario")
    parser.add_argument(
        "--pooler",
        choices=("none", "transaction"),
        default="none",
        help="HOTPATH_DB_POOLER of the servers: transaction, as behind PgBouncer",
    )
    args = parser.parse_args(argv)
    options = SMOKE if args.smoke else ScalingOptions()
    options = dataclasses.replace(options, pooler=args.pooler)
    if args.seconds:
        options = dataclasses.replace(options, seconds=args.seconds)
    paths = write(run_scaling(options), args.out)
    print(paths["md"].read_text())
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
