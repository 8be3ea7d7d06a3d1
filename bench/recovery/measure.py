"""The recovery time and recovery point of the shipped pgBackRest set-up, on a throwaway
cluster configured exactly as tests/recovery/ configures it (tests/fixtures/pitr.py).

RTO: from starting ``pgbackrest restore`` into an empty data directory to the restored cluster
accepting writes (files copied, WAL replayed to the target, promoted), for a database of
``orders`` orders in the full backup and ``orders_after`` more in the WAL after it.

RPO: on an otherwise idle server, the time from a commit to the archiving of the WAL segment
holding it, for a commit that is the first write into a fresh segment: the longest a commit
waits (archive_timeout), which is what a lost host takes with it; on a server just started
and on one that has run a while (see measure_rpo).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.cluster import ThrowawayPostgres
from tests.fixtures.pitr import PgBackRest

DATABASE = "hotpath"
RPO_GIVE_UP_SECONDS = 900  # three checkpoint_timeouts: something is broken past this
# Orders written in SQL, not through the API: the replay and copy rates are what is measured.
LOAD = """
WITH buyer AS (
    INSERT INTO users (email, password_hash, display_name)
    VALUES ('bench-' || $2 || '@example.com', 'x', 'Bench')
    RETURNING id
), item AS (
    INSERT INTO products (sku, name, category, price_minor, currency, stock)
    VALUES ('bench-' || $2, 'Bench item', 'tools', 500, 'EUR', 1000000000)
    RETURNING id
), placed AS (
    INSERT INTO orders (user_id, currency, total_minor)
    SELECT buyer.id, 'EUR', 500 FROM buyer, generate_series(1, $1)
    RETURNING id
)
INSERT INTO order_items (order_id, product_id, quantity, unit_price_minor)
SELECT placed.id, item.id, 1, 500 FROM placed, item
"""


@dataclass(frozen=True, slots=True)
class Recovery:
    orders: int
    orders_after: int
    database_mb: float
    wal_replayed_mb: float
    restore_seconds: float  # pgbackrest restore: the files
    replay_seconds: float  # start, WAL replay to the target, promotion
    orders_found: int

    @property
    def rto_seconds(self) -> float:
        return self.restore_seconds + self.replay_seconds


async def load_orders(url: str, orders: int, tag: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(LOAD, orders, tag)
    finally:
        await conn.close()


async def _fetchval(url: str, query: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def measure_recovery(orders: int, orders_after: int) -> Recovery:
    cluster = ThrowawayPostgres()
    restored = ThrowawayPostgres()
    try:
        backrest = PgBackRest.archiving(cluster)
        url = await cluster.create_database(DATABASE)
        await migrate(url, MIGRATIONS_DIR)
        await load_orders(url, orders, "base")
        size = await _fetchval(url, "SELECT pg_database_size(current_database())")
        backrest.run("--type=full", "backup")
        start_lsn = await _fetchval(url, "SELECT pg_current_wal_lsn()::text")
        await load_orders(url, orders_after, "after")
        moment = str(await _fetchval(url, "SELECT clock_timestamp()::text"))
        # Recovery to a time stops at the first commit after it, so one must be archived.
        await _fetchval(url, "CREATE TABLE after_the_moment ()")
        wal = await _fetchval(url, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')")
        backrest.run("check")
        began = time.monotonic()
        backrest.restore_to_time(restored, moment)
        copied = time.monotonic()
        restored.start()
        conn = await asyncpg.connect(restored.url(DATABASE))
        try:
            for _ in range(60_000):  # replays, then promotes: polled every 10 ms
                if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the restored cluster never left recovery")
            promoted = time.monotonic()
            found = await conn.fetchval("SELECT count(*) FROM orders")
        finally:
            await conn.close()
        return Recovery(
            orders=orders,
            orders_after=orders_after,
            database_mb=int(size) / 2**20,  # type: ignore[call-overload]
            wal_replayed_mb=float(wal) / 2**20,  # type: ignore[arg-type]
            restore_seconds=copied - began,
            replay_seconds=promoted - copied,
            orders_found=int(found),
        )
    finally:
        restored.stop()
        cluster.stop()


async def measure_rpo(*, fresh: bool) -> tuple[float, str, str]:
    """(seconds from the commit to its segment's archiving, the archive_timeout and the
    checkpoint_timeout in force).

    ``fresh``: on a server just started. Its checkpointer computed its first sleep while the
    start-up was still recovering, when archive_timeout does not count, so it sleeps a whole
    checkpoint_timeout before archive_timeout takes effect. Otherwise a CHECKPOINT first
    wakes it, as time does on a server that has run a while."""
    cluster = ThrowawayPostgres()
    try:
        backrest = PgBackRest.archiving(cluster)
        backrest.run("check")  # archiving works; its segment switch leaves a fresh segment
        conn = await asyncpg.connect(cluster.admin_url)
        try:
            timeout = await conn.fetchval("SHOW archive_timeout")
            checkpoints = await conn.fetchval("SHOW checkpoint_timeout")
            if not fresh:
                await conn.execute("CHECKPOINT")
            await conn.execute("SELECT pg_switch_wal()")
            await asyncio.sleep(1)  # let the switched-out segment be archived first
            await conn.execute("CREATE TABLE at_risk (n int); INSERT INTO at_risk VALUES (1)")
            committed = time.monotonic()
            segment = await conn.fetchval("SELECT pg_walfile_name(pg_current_wal_lsn())")
            while time.monotonic() - committed < RPO_GIVE_UP_SECONDS:
                archived = await conn.fetchval(
                    "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"
                )
                if archived >= segment:
                    return time.monotonic() - committed, str(timeout), str(checkpoints)
                await asyncio.sleep(0.1)
            raise AssertionError(f"{segment} was not archived within {RPO_GIVE_UP_SECONDS} s")
        finally:
            await conn.close()
    finally:
        cluster.stop()
