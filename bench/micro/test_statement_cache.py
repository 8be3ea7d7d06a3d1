"""What HOTPATH_DB_POOLER=transaction costs a read that reaches PostgreSQL: asyncpg's statement
cache off, so each statement is parsed and described again (one more round trip), and through
PgBouncer one more hop.

The statement is the product read the catalog runs on a cache miss (``get_product``), on a
migrated database of its own with one product, through ``Database.connection()``:

- ``cached``: straight to PostgreSQL, the statement cache on (the default);
- ``uncached``: straight to PostgreSQL, the cache off (what the pooler setting does);
- ``pgbouncer``: the cache off, through a PgBouncer in transaction mode started for the run
  (tests/fixtures/pooler.py), when Debian's pgbouncer is installed (make tools).

Interleaved rounds, best of each printed with the ratios; nothing asserted (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from server.db.database import Database, open_pool
from server.db.migrate import migrate
from server.db.sqlfiles import load_queries
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.databases import create_database, drop_database
from tests.fixtures.pooler import pgbouncer

PG_URL = os.environ.get("HOTPATH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 500
ROUNDS = 15


class Reads:
    def __init__(self, loop: asyncio.AbstractEventLoop, product: int) -> None:
        self.loop = loop
        self.product = product
        self.query = load_queries().sql("get_product")
        self.dbs: dict[str, Database] = {}

    def add(self, name: str, url: str, cache: int) -> None:
        pool = self.loop.run_until_complete(
            open_pool(url, min_size=1, max_size=1, statement_cache_size=cache)
        )
        self.dbs[name] = Database(pool, acquire_timeout=5.0)

    def per_read_us(self, name: str) -> float:
        db, query, product = self.dbs[name], self.query, self.product

        async def reads() -> None:
            for _ in range(BATCH):
                async with db.connection() as conn:
                    assert await conn.fetchrow(query, product) is not None

        start = time.perf_counter()
        self.loop.run_until_complete(reads())
        return (time.perf_counter() - start) / BATCH * 1e6


@pytest.fixture(scope="module")
def reads() -> Iterator[Reads]:
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(create_database("bench_stmt"))
    try:
        loop.run_until_complete(migrate(url, MIGRATIONS_DIR))
        product = loop.run_until_complete(_insert_product(url))
        found = Reads(loop, product)
        found.add("cached", url, 256)
        found.add("uncached", url, 0)
        with contextlib.ExitStack() as stack:
            if shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer"):
                upstream = urlsplit(PG_URL).port or 5432
                bouncer = stack.enter_context(
                    pgbouncer(upstream, pool_mode="transaction", pool_size=2)
                )
                found.add("pgbouncer", bouncer.url(url), 0)
            try:
                yield found
            finally:
                for db in found.dbs.values():
                    loop.run_until_complete(db.close())
    finally:
        loop.run_until_complete(drop_database(url))
        loop.close()


async def _insert_product(url: str) -> int:
    pool = await open_pool(url, min_size=1, max_size=1)
    try:
        conn = pool.try_acquire()
        assert conn is not None
        product: int = await conn.fetchval(
            "INSERT INTO products (sku, name, category, price_minor, currency, stock)"
            " VALUES ('bench-stmt', 'Kettle', 'kitchen', 4999, 'EUR', 10) RETURNING id"
        )
        pool.release(conn)
        return product
    finally:
        await pool.close()


@pytest.mark.benchmark(group="statement-cache")
def test_statement_cache_cost(
    benchmark: BenchmarkFixture, reads: Reads, capsys: pytest.CaptureFixture[str]
) -> None:
    def measure() -> dict[str, float]:
        best = dict.fromkeys(reads.dbs, float("inf"))
        for _ in range(ROUNDS):
            for name in reads.dbs:
                best[name] = min(best[name], reads.per_read_us(name))
        return best

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update({f"{name}_us": us for name, us in best.items()})
    line = ", ".join(
        f"{name} {us:.0f} us ({us / best['cached']:.2f}x)" for name, us in best.items()
    )
    with capsys.disabled():
        print(f"\nget_product through Database.connection(), best of {ROUNDS}: {line}")
