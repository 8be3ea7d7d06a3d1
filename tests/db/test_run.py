"""``Database.run``: one piece of work on a pooled connection, with what ``async with
db.connection()`` guarantees: the connection back in the pool after, reused; never reused after
a timeout, a cancel or a break mid-statement; the acquire timeout and the request's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from server.db.connection import PooledConnection
from server.db.database import Database, create_pool
from server.runtime.settings import Settings
from server.web.errors import DatabaseUnavailable, DeadlineExceeded
from tests.db.test_request_deadline import within_request


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    # One connection: which one run() got back, and whether it was reused, is plain to see.
    small = replace(
        settings, db_pool_min=1, db_pool_max=1, db_command_timeout=0.3, db_acquire_timeout=0.3
    )
    db = Database(await create_pool(small), acquire_timeout=small.db_acquire_timeout)
    try:
        yield db
    finally:
        await db.close()


async def backend(conn: PooledConnection, plus: int = 0) -> int:
    pid: int = await conn.fetchval("SELECT pg_backend_pid() + $1::int", plus)
    return pid


async def test_the_work_gets_a_connection_and_its_result_comes_back(database: Database) -> None:
    first = await database.run(backend)
    assert await database.run(backend, 1) == first + 1  # arguments pass through
    assert await database.run(backend, plus=2) == first + 2
    assert await database.run(backend) == first  # the same connection, given back and reused
    assert (database.pool.size, database.pool.idle) == (1, 1)


async def test_a_failed_statement_gives_the_connection_back_for_reuse(
    database: Database,
) -> None:
    first = await database.run(backend)

    async def divide(conn: PooledConnection) -> object:
        return await conn.fetchval("SELECT 1 / $1::int", 0)

    with pytest.raises(asyncpg.DivisionByZeroError):
        await database.run(divide)
    assert await database.run(backend) == first


async def test_a_connection_left_in_a_transaction_is_not_reused(database: Database) -> None:
    first = await database.run(backend)

    async def begin(conn: PooledConnection) -> None:
        await conn.execute("BEGIN")

    await database.run(begin)
    assert await database.run(backend) != first  # closed on its way back; a new one opened


async def test_a_timed_out_statement_is_unavailable_and_its_connection_never_reused(
    database: Database,
) -> None:
    first = await database.run(backend)

    async def slow(conn: PooledConnection) -> object:
        return await conn.fetchval("SELECT pg_sleep(5)")

    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailable):
        await database.run(slow)
    assert time.perf_counter() - started < 2.0
    assert await database.run(backend) != first


async def test_a_cancelled_holder_is_cancelled_and_its_connection_never_reused(
    database: Database,
) -> None:
    first = await database.run(backend)
    started = asyncio.Event()

    async def slow(conn: PooledConnection) -> object:
        statement = conn.fetchval("SELECT pg_sleep(5)")
        started.set()
        return await statement

    holder = asyncio.create_task(database.run(slow))
    await started.wait()
    await asyncio.sleep(0.05)
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert database.pool.size == 0  # its slot free at once; the connection closes meanwhile
    assert await database.run(backend) != first


async def test_an_exhausted_pool_is_unavailable_fast(database: Database) -> None:
    async with database.connection():
        started = time.perf_counter()
        with pytest.raises(DatabaseUnavailable):
            await database.run(backend)
        assert time.perf_counter() - started < 1.0
    assert await database.run(backend) > 0


async def test_the_deadline_bounds_the_wait_and_the_statement(settings: Settings) -> None:
    roomy = replace(settings, db_pool_min=1, db_pool_max=1, db_command_timeout=30.0)
    db = Database(await create_pool(roomy), acquire_timeout=30.0)
    try:

        async def slow(conn: PooledConnection) -> object:
            return await conn.fetchval("SELECT pg_sleep(5)")

        started = time.perf_counter()
        error = await within_request(db, lambda db: db.run(slow), seconds=0.3)
        assert isinstance(error, DeadlineExceeded), error
        assert time.perf_counter() - started < 1.5
        async with db.connection():  # the only connection taken: the wait is what ends
            started = time.perf_counter()
            error = await within_request(db, lambda db: db.run(backend), seconds=0.3)
            assert isinstance(error, DeadlineExceeded), error
            assert time.perf_counter() - started < 1.5
        assert await within_request(db, lambda db: db.run(backend), seconds=5) == await db.run(
            backend
        )
    finally:
        await db.close()
