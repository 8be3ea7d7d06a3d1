"""What the database layer adds to a statement: the deadline wrapper (``PooledConnection``) and
the pool's acquire + release, each against asyncpg alone.

- ``layer``: building a fetchrow's coroutine (closed unrun) through the wrapper, inside a
  request deadline, against asyncpg's own ``fetchrow(..., timeout=)``: the wrapper's cost
  without the round trip's noise.
- ``fetchrow``: a primary-key-sized fetchrow through ``Database.connection()`` inside a request
  deadline, against a bare asyncpg connection; real round trips to PostgreSQL.
- ``acquire_release``: ``try_acquire`` + ``release`` of an idle connection.
"""

from __future__ import annotations

import asyncio
import os
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.types import Message, Receive, Scope, Send

from middleware.deadline import DeadlineMiddleware
from server.db.connection import PooledConnection
from server.db.database import Database, open_pool

PG_URL = os.environ.get("HOTPATH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROW = "SELECT $1::bigint AS id, 'Kettle' AS name, 4999 AS price_minor, 1 AS version"
BATCH = 500
ROUNDS = 20


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    db: Database
    bare: asyncpg.Connection

    def in_request(self, work: Callable[[], Awaitable[object]]) -> object:
        """Run ``work`` in a request's task, with the deadline DeadlineMiddleware sets."""
        result: list[object] = []

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            result.append(await work())

        async def receive() -> Message:
            return {}

        async def send(message: Message) -> None:
            pass

        app = DeadlineMiddleware(endpoint, seconds=3600)
        self.loop.run_until_complete(app({"type": "http"}, receive, send))
        return result[0]

    def pooled_reads(self) -> None:
        async def reads() -> None:
            for n in range(BATCH):
                async with self.db.connection() as conn:
                    await conn.fetchrow(ROW, n)

        self.in_request(reads)

    def bare_reads(self) -> None:
        async def reads() -> None:
            for n in range(BATCH):
                await self.bare.fetchrow(ROW, n, timeout=5.0)

        self.loop.run_until_complete(reads())

    def acquire_release(self) -> None:
        pool = self.db.pool
        for _ in range(BATCH):
            conn = pool.try_acquire()
            assert conn is not None
            pool.release(conn)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    pool = loop.run_until_complete(open_pool(PG_URL, min_size=1, max_size=1))
    bare = loop.run_until_complete(asyncpg.connect(PG_URL, command_timeout=5.0))
    try:
        yield Env(loop, Database(pool, acquire_timeout=1.0), bare)
    finally:
        loop.run_until_complete(bare.close())
        loop.run_until_complete(pool.close())
        loop.close()


def _layer_ns(env: Env) -> dict[str, float]:
    """Best of ROUNDS interleaved runs, ns per coroutine built."""
    raw = env.bare
    wrapped = PooledConnection(raw, command_timeout=5.0)
    variants: dict[str, Callable[[], object]] = {
        "wrapper": lambda: wrapped.fetchrow(ROW, 1).close(),
        "asyncpg": lambda: raw.fetchrow(ROW, 1, timeout=5.0).close(),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(ROUNDS):
        for name, build in variants.items():

            async def timed(build: Callable[[], object] = build) -> float:
                return timeit.timeit(build, number=20_000)

            took = env.in_request(timed)
            assert isinstance(took, float)
            best[name] = min(best[name], took / 20_000 * 1e9)
    return best


def _per_op_us(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / BATCH * 1e6


@pytest.mark.benchmark(group="db-connection")
@pytest.mark.parametrize("variant", ["pooled_reads", "bare_reads", "acquire_release"])
def test_db_path(benchmark: BenchmarkFixture, env: Env, variant: str) -> None:
    benchmark.extra_info["ops_per_round"] = BATCH
    benchmark(getattr(env, variant))


@pytest.mark.benchmark(group="db-connection-ratio")
def test_db_layer_ratios(
    benchmark: BenchmarkFixture, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleaved so machine noise hits both sides alike; print, never assert, ratios."""

    def measure() -> dict[str, float]:
        layer = _layer_ns(env)
        reads: dict[str, list[float]] = {"pooled": [], "bare": []}
        for _ in range(ROUNDS):
            reads["pooled"].append(_per_op_us(env.pooled_reads))
            reads["bare"].append(_per_op_us(env.bare_reads))
        pool_ns = min(_per_op_us(env.acquire_release) for _ in range(ROUNDS)) * 1000
        return {
            "wrapper_ns": layer["wrapper"],
            "asyncpg_ns": layer["asyncpg"],
            "pooled_read_us": min(reads["pooled"]),
            "bare_read_us": min(reads["bare"]),
            "acquire_release_ns": pool_ns,
        }

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(best)
    with capsys.disabled():
        print(
            f"\nstatement built through the wrapper {best['wrapper_ns']:.0f} ns, by asyncpg"
            f" {best['asyncpg_ns']:.0f} ns (+{best['wrapper_ns'] - best['asyncpg_ns']:.0f} ns);"
            f" fetchrow through Database.connection() {best['pooled_read_us']:.1f} us, bare"
            f" asyncpg {best['bare_read_us']:.1f} us"
            f" ({best['pooled_read_us'] / best['bare_read_us']:.2f}x);"
            f" acquire + release {best['acquire_release_ns']:.0f} ns"
        )
