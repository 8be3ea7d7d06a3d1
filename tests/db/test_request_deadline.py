"""The request deadline: it bounds the pool acquire and becomes each statement's timeout, which
PostgreSQL enforces too (the statement is cancelled there), and work a request detaches is
free of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import asyncpg
import pytest
import structlog
from starlette.types import Receive, Scope, Send

from middleware.deadline import DeadlineMiddleware, time_left
from server.db.database import Database, create_pool
from server.runtime import background
from server.runtime.settings import Settings
from server.web.errors import DatabaseUnavailable, DeadlineExceeded
from tests.fixtures.support import client_for

Work = Callable[[Database], Awaitable[object]]


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    # A long acquire and command timeout: whatever ends these requests early is the deadline.
    roomy = replace(settings, db_pool_min=1, db_pool_max=1, db_command_timeout=30.0)
    db = Database(await create_pool(roomy), acquire_timeout=30.0)
    try:
        yield db
    finally:
        await db.close()


async def within_request(db: Database, work: Work, *, seconds: float) -> object:
    """Run `work` inside an HTTP request whose deadline is `seconds`; its result or error."""
    outcome: list[object] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            outcome.append(await work(db))
        except Exception as exc:
            outcome.append(exc)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with client_for(DeadlineMiddleware(endpoint, seconds=seconds)) as http:
        assert (await http.get("/")).status_code == 204
    return outcome[0]


async def sleeping_backends(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'"
        )
        return count
    finally:
        await conn.close()


async def test_a_slow_statement_ends_at_the_deadline_and_in_postgres(
    database: Database, settings: Settings
) -> None:
    async def slow(db: Database) -> object:
        async with db.connection() as conn:
            return await conn.fetchval("SELECT pg_sleep(5)")

    started = time.perf_counter()
    error = await within_request(database, slow, seconds=0.3)
    elapsed = time.perf_counter() - started
    assert isinstance(error, DeadlineExceeded), error
    assert error.status_code == 503
    assert error.retry_after == 1
    assert 0.25 < elapsed < 1.5
    # The cancel reached the server: no backend is still sleeping for a client long gone.
    for _ in range(40):
        if await sleeping_backends(settings) == 0:
            break
        await asyncio.sleep(0.05)
    assert await sleeping_backends(settings) == 0
    async with database.connection() as conn:  # and the pooled connection is usable again
        assert await conn.fetchval("SELECT $1::int", 7) == 7


async def test_the_deadline_bounds_the_wait_for_a_connection(database: Database) -> None:
    async def query(db: Database) -> object:
        async with db.connection() as conn:
            return await conn.fetchval("SELECT 1")

    async with database.connection():  # the pool's only connection is taken
        started = time.perf_counter()
        error = await within_request(database, query, seconds=0.3)
        elapsed = time.perf_counter() - started
    assert isinstance(error, DeadlineExceeded), error
    assert elapsed < 1.5  # the acquire timeout is 30 s: the deadline ended the wait
    assert await within_request(database, query, seconds=5) == 1


async def test_a_transaction_past_its_deadline_rolls_back_and_writes_nothing(
    database: Database, settings: Settings
) -> None:
    table = f"deadline_probe_{time.monotonic_ns()}"
    async with database.connection() as conn:
        await conn.execute(f"CREATE TABLE {table} (n int)")
    try:

        async def half_done(db: Database) -> object:
            async with db.transaction() as conn:
                await conn.execute(f"INSERT INTO {table} VALUES ($1)", 1)
                return await conn.fetchval("SELECT pg_sleep($1)", 5.0)

        error = await within_request(database, half_done, seconds=0.3)
        assert isinstance(error, DeadlineExceeded), error
        async with database.connection() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    finally:
        async with database.connection() as conn:
            await conn.execute(f"DROP TABLE {table}")


async def test_a_fast_request_is_untouched_and_work_outside_requests_has_no_deadline(
    database: Database,
) -> None:
    async def quick(db: Database) -> object:
        async with db.transaction() as conn:
            return await conn.fetchval("SELECT $1::text", "ok")

    assert await within_request(database, quick, seconds=2) == "ok"
    assert time_left() is None
    async with database.connection() as conn:  # outside a request: only the command timeout
        assert await conn.fetchval("SELECT pg_sleep(0.4)::text") == ""


async def test_detached_work_keeps_the_log_context_but_not_the_deadline(
    database: Database,
) -> None:
    seen: dict[str, object] = {}

    async def later() -> None:
        await asyncio.sleep(0.4)  # outlives the request's 0.3 s
        seen["time_left"] = time_left()
        seen["log"] = structlog.contextvars.get_contextvars().get("probe")
        async with database.connection() as conn:
            seen["query"] = await conn.fetchval("SELECT $1::int", 3)

    async def starts_work(db: Database) -> object:
        structlog.contextvars.bind_contextvars(probe="kept")
        assert (left := time_left()) is not None
        assert 0 < left <= 0.3
        return background.spawn_detached(later())

    task = await within_request(database, starts_work, seconds=0.3)
    assert isinstance(task, asyncio.Task)
    await task
    assert seen == {"time_left": None, "log": "kept", "query": 3}


async def test_a_dead_connection_is_still_unavailable_not_a_deadline(
    database: Database, settings: Settings
) -> None:
    async def killed(db: Database) -> object:
        async with db.connection() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            admin = await asyncpg.connect(settings.database_url)
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            return await conn.fetchval("SELECT 1")

    error = await within_request(database, killed, seconds=5)
    assert isinstance(error, DatabaseUnavailable)
    assert not isinstance(error, DeadlineExceeded)


def test_the_middleware_wants_a_positive_number_of_seconds() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    for bad in (0, -1, True, "5", None):
        with pytest.raises(ValueError, match="positive"):
            DeadlineMiddleware(app, seconds=bad)  # type: ignore[arg-type]
