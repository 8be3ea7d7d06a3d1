"""ConnectionPool against a real PostgreSQL: reuse, waiting, dropping broken connections,
idle retirement, recycling (lifetime, statement count, expire-all), cancellation races and
closing."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest

from server.app import HotpathApp
from server.db.connection import PooledConnection
from server.db.database import Database, create_pool
from server.db.pool import Connect, ConnectionPool, PoolClosed
from server.runtime.settings import Settings, SettingsError
from server.web.state import app_container
from tests.fixtures.clock import Clock
from tests.fixtures.support import free_port, until


def connector(url: str) -> tuple[Connect, list[asyncpg.Connection]]:
    opened: list[asyncpg.Connection] = []

    async def connect() -> PooledConnection:
        conn: asyncpg.Connection = await asyncpg.connect(url)
        opened.append(conn)
        return PooledConnection(conn)

    return connect, opened


@pytest.fixture
async def made(
    settings: Settings,
) -> AsyncIterator[tuple[ConnectionPool, list[asyncpg.Connection]]]:
    connect, opened = connector(settings.database_url)
    pool = ConnectionPool(connect, min_size=1, max_size=2, clock=Clock())
    await pool.start()
    yield pool, opened
    await pool.close(timeout=1)
    for conn in opened:
        assert conn.is_closed()


async def test_connections_are_reused_last_in_first_out_and_opened_lazily(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, opened = made
    assert (pool.size, pool.idle, len(opened)) == (1, 1, 1)
    first = await pool.acquire(1)
    second = await pool.acquire(1)  # nothing idle, room for one more: opened now
    assert len(opened) == 2
    assert pool.size == 2
    assert first is not second
    pool.release(first)
    pool.release(second)
    pool.release(second)  # a second release of one connection is ignored
    assert pool.idle == 2
    assert pool.try_acquire() is second  # the last one back is the first one out
    assert await second.fetchval("SELECT 1") == 1
    pool.release(second)
    assert len(opened) == 2


async def test_a_full_pool_makes_callers_wait_in_order_or_time_out(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, _ = made
    held = [await pool.acquire(1), await pool.acquire(1)]
    with pytest.raises(TimeoutError):
        await pool.acquire(0.1)
    assert pool.pending == 0  # the caller that gave up is no longer queued
    assert pool.timeouts == 1
    first = asyncio.create_task(pool.acquire(5))
    second = asyncio.create_task(pool.acquire(5))
    await asyncio.sleep(0.05)
    pool.release(held[0])
    assert await first is held[0]  # handed straight to the oldest waiter
    assert not second.done()
    pool.release(held[1])
    assert await second is held[1]
    pool.release(held[0])
    pool.release(held[1])
    assert pool.idle == 2  # the timed-out caller left no waiter behind to swallow a release


async def test_a_connection_left_in_a_transaction_or_closed_is_dropped(
    made: tuple[ConnectionPool, list[asyncpg.Connection]], settings: Settings
) -> None:
    pool, opened = made
    conn = await pool.acquire(1)
    await conn.execute("BEGIN")
    pool.release(conn)
    assert conn.is_closed()
    assert pool.size == 0
    fresh = await pool.acquire(1)
    assert fresh is not conn
    assert await fresh.fetchval("SELECT 2") == 2
    pool.release(fresh)
    # A backend that dies while idle is skipped and replaced.
    pid = await fresh.fetchval("SELECT pg_backend_pid()")
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    for _ in range(50):
        if fresh.is_closed():
            break
        await asyncio.sleep(0.02)
    replaced = await pool.acquire(1)
    assert replaced is not fresh
    assert await replaced.fetchval("SELECT 3") == 3
    pool.release(replaced)
    assert len(opened) == 3


async def test_a_dropped_connection_lets_a_waiter_open_a_new_one(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, _ = made
    held = [await pool.acquire(1), await pool.acquire(1)]
    waiting = asyncio.create_task(pool.acquire(5))
    await asyncio.sleep(0.05)
    await held[0].execute("BEGIN")
    pool.release(held[0])  # dropped: its slot goes to the waiter, which opens a connection
    got = await asyncio.wait_for(waiting, 5)
    assert got not in held
    assert await got.fetchval("SELECT 4") == 4
    pool.release(got)
    pool.release(held[1])
    assert pool.size == 2


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_gives_it_back(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, _ = made
    held = [await pool.acquire(1), await pool.acquire(1)]
    waiting = asyncio.create_task(pool.acquire(5))
    await asyncio.sleep(0.05)
    pool.release(held[0])  # the waiter's future now holds it...
    waiting.cancel()  # ...but the waiter is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.idle == 1
    assert pool.try_acquire() is held[0]
    pool.release(held[0])
    pool.release(held[1])


async def test_connections_idle_past_max_idle_are_retired_down_to_min_size(
    settings: Settings,
) -> None:
    connect, _ = connector(settings.database_url)
    clock = Clock()
    pool = ConnectionPool(connect, min_size=1, max_size=3, max_idle=300, clock=clock)
    await pool.start()
    try:
        conns = [await pool.acquire(1) for _ in range(3)]
        for conn in conns:
            pool.release(conn)
            clock.now += 10
        assert (pool.retire_idle(), pool.size) == (0, 3)
        clock.now += 275  # conns[0] has been idle 305 s, conns[1] 295 s
        busy = await pool.acquire(1)  # the newest (LIFO): conns[2]
        assert busy is conns[2]
        assert (pool.retire_idle(), pool.size) == (1, 3 - 1)
        assert (conns[0].is_closed(), conns[1].is_closed()) == (True, False)
        clock.now += 1000
        assert (pool.retire_idle(), pool.size) == (1, 1)  # the one in use stays open
        assert (conns[1].is_closed(), busy.is_closed()) == (True, False)
        pool.release(busy)
        clock.now += 1000
        assert (pool.retire_idle(), pool.size) == (0, 1)  # never below min_size
        async with asyncio.timeout(1):
            assert await pool.acquire(1) is busy
    finally:
        await pool.close(timeout=1)


async def test_a_connection_idle_through_housekeeping_is_checked_before_its_next_use(
    made: tuple[ConnectionPool, list[asyncpg.Connection]], db: asyncpg.Connection
) -> None:
    pool, opened = made
    conn = await pool.acquire(1)
    pool.release(conn)
    pool.retire_idle()  # a housekeeping round
    assert pool.idle == 1
    assert pool.try_acquire() is None  # not without a round trip: the fast path passes
    assert await pool.acquire(1) is conn  # it answered
    assert conn.queries == 0  # the check is the pool's, not a statement of the holder's
    pool.release(conn)
    pool.retire_idle()
    await db.execute("SELECT pg_terminate_backend($1)", conn.raw.get_server_pid())
    fresh = await pool.acquire(1)  # the dead one fails its check and is replaced
    assert fresh is not conn
    assert await fresh.fetchval("SELECT 7") == 7
    pool.release(fresh)
    assert (pool.size, len(opened)) == (1, 2)


async def test_close_fails_waiters_waits_for_connections_in_use_and_refuses_new_callers(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, _ = made
    held = [await pool.acquire(1), await pool.acquire(1)]
    waiting = asyncio.create_task(pool.acquire(5))
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(pool.close(timeout=5))
    with pytest.raises(PoolClosed):
        await waiting
    await asyncio.sleep(0.05)
    assert not closing.done()  # still waiting for the two in use
    pool.release(held[0])
    pool.release(held[1])
    await asyncio.wait_for(closing, 2)
    assert all(conn.is_closed() for conn in held)
    assert pool.size == 0
    with pytest.raises(PoolClosed):
        await pool.acquire(1)


async def test_close_terminates_what_does_not_come_back_in_time(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, _ = made
    stuck = await pool.acquire(1)
    await asyncio.wait_for(pool.close(timeout=0.1), 2)
    assert stuck.is_closed()
    assert pool.size == 0
    pool.release(stuck)  # a late release after close is harmless
    pool.release(stuck)
    assert pool.size == 0


async def test_a_failed_start_or_open_leaves_no_connection_or_slot_behind(
    settings: Settings,
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    connect, opened = connector(nowhere)
    pool = ConnectionPool(connect, min_size=2, max_size=2)
    with pytest.raises(OSError, match="onnect"):
        await pool.start()
    assert pool.size == 0
    lazy = ConnectionPool(connect, min_size=0, max_size=1)
    await lazy.start()
    with pytest.raises(OSError, match="onnect"):
        await lazy.acquire(5)
    assert lazy.size == 0
    assert opened == []


async def test_many_callers_share_a_small_pool_without_exceeding_it(
    made: tuple[ConnectionPool, list[asyncpg.Connection]], settings: Settings
) -> None:
    pool, opened = made
    peak = 0
    in_use = 0

    async def worker(n: int) -> int:
        nonlocal peak, in_use
        total = 0
        for i in range(20):
            conn = pool.try_acquire() or await pool.acquire(5)
            in_use += 1
            peak = max(peak, in_use)
            try:
                total += await conn.fetchval("SELECT $1::int", n * 100 + i)
            finally:
                in_use -= 1
                pool.release(conn)
        return total

    totals = await asyncio.gather(*(worker(n) for n in range(30)))
    assert totals == [sum(n * 100 + i for i in range(20)) for n in range(30)]
    assert peak <= 2
    assert len(opened) == 2
    assert pool.size == 2
    assert pool.idle == 2


def test_sizes_are_checked() -> None:
    async def connect() -> PooledConnection:
        raise AssertionError("not called")

    for low, high in ((2, 1), (-1, 1), (0, 0)):
        with pytest.raises(ValueError, match="min_size"):
            ConnectionPool(connect, min_size=low, max_size=high)


async def test_a_freed_slot_is_passed_on_when_the_woken_waiter_is_gone(
    made: tuple[ConnectionPool, list[asyncpg.Connection]],
) -> None:
    pool, _ = made
    held = [await pool.acquire(1), await pool.acquire(1)]
    woken = asyncio.create_task(pool.acquire(5))
    after = asyncio.create_task(pool.acquire(5))
    await asyncio.sleep(0.05)
    await held[0].execute("BEGIN")
    pool.release(held[0])  # dropped: its slot wakes the first waiter...
    woken.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await woken
    got = await asyncio.wait_for(after, 2)  # the next waiter opens the freed slot
    assert await got.fetchval("SELECT 5") == 5
    pool.release(got)
    pool.release(held[1])
    assert pool.pending == 0


async def test_a_connection_whose_holder_was_cancelled_mid_begin_is_never_reused(
    settings: Settings,
) -> None:
    """Cancelled while BEGIN is in flight: asyncpg has not seen the answer, so the connection
    looks idle, but the server finishes the BEGIN. Reused, the next holder's write would run
    inside that stray transaction and vanish."""
    small = replace(settings, db_pool_min=1, db_pool_max=1)
    db = Database(await create_pool(small), acquire_timeout=2.0)
    table = f"pool_cancel_{secrets.token_hex(4)}"
    try:
        async with db.connection() as conn:
            await conn.execute(f"CREATE TABLE {table} (n int)")

        async def request() -> None:
            async with db.transaction() as conn:
                await conn.execute(f"INSERT INTO {table} VALUES ($1)", 1)

        for loop_turns in range(6):  # cancel at each point the request can be at
            task = asyncio.create_task(request())
            for _ in range(loop_turns):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)  # an in-flight BEGIN's answer arrives
            async with db.connection() as conn:
                assert not conn.is_in_transaction(), loop_turns
                await conn.execute(f"INSERT INTO {table} VALUES ($1)", 42)
            async with db.connection() as conn:
                count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE n = 42")
            assert count == loop_turns + 1, loop_turns  # every acknowledged write is there
    finally:
        async with db.connection() as conn:
            await conn.execute(f"DROP TABLE {table}")
        await db.close()


async def test_the_app_retires_idle_connections_without_any_traffic(
    app: HotpathApp, client: httpx.AsyncClient
) -> None:
    pool: ConnectionPool = app_container(app).db.pool
    held = [await pool.acquire(1) for _ in range(pool.max_size)]
    for conn in held:
        pool.release(conn)
    assert pool.size == pool.max_size > pool.min_size
    pool.max_idle = 0.1
    await until(lambda: pool.size == pool.min_size, limit=3)  # housekeeping: twice a second
    assert sum(conn.is_closed() for conn in held) == pool.max_size - pool.min_size
    assert (await client.get("/readyz")).status_code == 200


async def test_a_connection_past_its_lifetime_is_replaced_when_it_comes_back_or_sits_idle(
    settings: Settings,
) -> None:
    connect, _ = connector(settings.database_url)
    clock = Clock()
    pool = ConnectionPool(connect, min_size=0, max_size=2, max_lifetime=100, clock=clock)
    await pool.start()
    try:
        old = await pool.acquire(1)
        clock.now += 50  # within its lifetime (90 to 100 s: a tenth of jitter)
        pool.release(old)
        assert pool.try_acquire() is old
        clock.now += 51
        pool.release(old)  # 101 s old
        assert old.is_closed()
        assert pool.size == 0
        young = await pool.acquire(1)
        assert young is not old
        assert await young.fetchval("SELECT 1") == 1
        pool.release(young)
        clock.now += 101  # past its lifetime while idle, though not past max_idle
        assert pool.retire_idle() == 1
        assert young.is_closed()
        assert pool.size == 0
    finally:
        await pool.close(timeout=1)


async def test_a_connection_that_has_run_max_queries_statements_is_replaced(
    settings: Settings,
) -> None:
    connect, _ = connector(settings.database_url)
    pool = ConnectionPool(connect, min_size=1, max_size=1, max_queries=3)
    await pool.start()
    try:
        conn = await pool.acquire(1)
        assert await conn.fetchval("SELECT 1") == 1
        async with conn.transaction():  # BEGIN and COMMIT are asyncpg's: not counted
            await conn.execute("SELECT $1::int", 2)
        pool.release(conn)
        assert pool.try_acquire() is conn  # two statements: kept
        assert await conn.fetchval("SELECT 3") == 3
        pool.release(conn)  # the third: replaced
        assert conn.is_closed()
        fresh = await pool.acquire(1)
        assert fresh is not conn
        assert fresh.queries == 0
        pool.release(fresh)
    finally:
        await pool.close(timeout=1)


async def test_expire_connections_replaces_idle_busy_and_opening_connections(
    settings: Settings,
) -> None:
    connect, _ = connector(settings.database_url)
    gate = asyncio.Event()
    gate.set()

    async def gated() -> PooledConnection:
        await gate.wait()
        return await connect()

    pool = ConnectionPool(gated, min_size=1, max_size=3)
    await pool.start()
    try:
        idle, busy = await pool.acquire(1), await pool.acquire(1)
        gate.clear()
        opening = asyncio.create_task(pool.acquire(5))  # connecting when the pool expires
        await asyncio.sleep(0.05)
        pool.release(idle)
        pool.expire_connections()
        assert idle.is_closed()  # idle: closed at once
        gate.set()
        late = await opening
        assert await busy.fetchval("SELECT 1") == 1  # in use: works until it comes back
        pool.release(busy)
        pool.release(late)
        assert busy.is_closed()
        assert late.is_closed()
        assert pool.size == 0
        fresh = await pool.acquire(1)
        assert fresh not in (idle, busy, late)
        pool.release(fresh)
        assert pool.try_acquire() is fresh  # the new generation is reused as usual
        pool.release(fresh)
    finally:
        await pool.close(timeout=1)


async def test_a_connection_given_back_with_a_statement_running_is_closed_not_reused(
    made: tuple[ConnectionPool, list[asyncpg.Connection]], db: asyncpg.Connection
) -> None:
    pool, _ = made
    conn = await pool.acquire(1)
    pid = conn.raw.get_server_pid()
    running = asyncio.create_task(conn.fetchval("SELECT 1 FROM pg_sleep(5)"))
    await asyncio.sleep(0.1)
    assert not conn.is_in_transaction()  # nothing else tells: only the statement in flight
    pool.release(conn)
    assert (pool.size, pool.idle) == (0, 0)
    # Closed once the statement is cancelled in the server, not left running there.
    with pytest.raises(asyncpg.QueryCanceledError):
        await asyncio.wait_for(running, 2)
    await until(conn.is_closed, limit=2)
    for _ in range(40):  # its backend exits as the close arrives
        if not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            break
        await asyncio.sleep(0.05)
    assert not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    fresh = await pool.acquire(1)
    assert await fresh.fetchval("SELECT 6") == 6
    pool.release(fresh)


async def test_the_recycling_settings_reach_the_pool(settings: Settings) -> None:
    read = Settings.from_env({"HOTPATH_DB_MAX_LIFETIME": "600", "HOTPATH_DB_MAX_QUERIES": "0"})
    assert (read.db_max_lifetime, read.db_max_queries) == (600.0, 0)
    with pytest.raises(SettingsError, match="HOTPATH_DB_MAX_QUERIES"):
        Settings.from_env({"HOTPATH_DB_MAX_QUERIES": "-1"})
    configured = replace(settings, db_max_lifetime=600.0, db_max_queries=0)
    pool = await create_pool(configured)
    try:
        assert (pool.max_lifetime, pool.max_queries) == (600.0, math.inf)  # 0: no limit
    finally:
        await pool.close(timeout=1)
