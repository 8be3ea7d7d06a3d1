"""A PostgreSQL that stops answering without closing anything (SIGSTOP: its connections stay
open, the kernel still accepts new ones, nothing answers) is found about as fast as one that
refuses connections, and the app answers again once it does.

The bound README documents: a request answers 503 with Retry-After within the acquire timeout,
except one whose statement was already sent, or went out on a connection used since the last
housekeeping round: that one waits for its statement's timeout (the command timeout, or the
request's time left), then at most the acquire timeout for the statement's cancel, and its
connection is replaced, not reused. So at most one request per pool connection answers that
late, and none after them.

On a cluster of this module's own (tests/fixtures/cluster.py), never the shared server.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import create_app
from server.db.database import Database, open_pool
from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from server.web.errors import DatabaseUnavailable
from tests.fixtures.cluster import ThrowawayPostgres
from tests.fixtures.support import client_for, lifespan, problem_type

# Scheduling on a shared two-core box and the way back: added to every bound below.
SLACK = 0.75
ACQUIRE = 1.0
COMMAND = 3.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayPostgres]:
    postgres = ThrowawayPostgres()
    try:
        postgres.init()
        postgres.start()
        yield postgres
    finally:
        postgres.stop()  # resumes it first if a test left it paused


@pytest.fixture(scope="module")
async def stalling_url(cluster: ThrowawayPostgres) -> str:
    url = await cluster.create_database(f"hotpath_stall_{secrets.token_hex(3)}")
    await migrate(url, MIGRATIONS_DIR)
    return url


@pytest.fixture
async def database(stalling_url: str) -> AsyncIterator[Database]:
    pool = await open_pool(stalling_url, min_size=1, max_size=2, command_timeout=COMMAND)
    db = Database(pool, acquire_timeout=ACQUIRE)
    try:
        yield db
    finally:
        await db.close()


@contextmanager
def paused(cluster: ThrowawayPostgres) -> Iterator[None]:
    cluster.pause()
    try:
        yield
    finally:
        cluster.resume()


async def test_an_idle_connection_is_checked_so_a_paused_server_is_found_within_the_acquire_timeout(
    cluster: ThrowawayPostgres, database: Database
) -> None:
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT 1") == 1
    database.pool.retire_idle()  # a housekeeping round: the connection sat idle through it
    with paused(cluster):
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            async with database.connection() as conn:
                await conn.fetchval("SELECT 2")
        assert time.monotonic() - started < ACQUIRE + SLACK
        assert database.pool.size == 0  # the silent connection is gone, its slot free
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT 3") == 3


async def test_a_statement_sent_to_a_paused_server_ends_at_its_timeout_and_takes_its_connection(
    cluster: ThrowawayPostgres, database: Database
) -> None:
    async with database.connection() as conn:  # used just now: not checked before reuse
        assert await conn.fetchval("SELECT 1") == 1
    with paused(cluster):
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            async with database.connection() as conn:
                await conn.fetchval("SELECT 2")
        assert COMMAND - 0.1 < time.monotonic() - started < COMMAND + ACQUIRE + SLACK
        # Not reused (it would wait for asyncpg's cancel, unanswered too): the next request
        # needs a new connection, which a paused server does not give within the timeout.
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            async with database.connection() as conn:
                await conn.fetchval("SELECT 3")
        assert time.monotonic() - started < ACQUIRE + SLACK
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT 4") == 4


async def test_a_transaction_on_a_paused_server_waits_for_no_rollback(
    cluster: ThrowawayPostgres, database: Database
) -> None:
    paused_at: list[float] = []

    async def pause_mid_transaction() -> None:
        async with database.transaction() as conn:
            await conn.fetchval("SELECT 1")
            cluster.pause()
            paused_at.append(time.monotonic())
            await conn.fetchval("SELECT 2")

    try:
        with pytest.raises(DatabaseUnavailable):
            await pause_mid_transaction()
        took = time.monotonic() - paused_at[0]
    finally:
        cluster.resume()
    # No ROLLBACK waited for the timed-out statement's cancel, another command timeout: the
    # connection is closed instead (its cancel given the acquire timeout), which ends the
    # transaction in the server.
    assert COMMAND - 0.1 < took < COMMAND + ACQUIRE + SLACK
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT 5") == 5


async def _timed_read(http: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await http.get(f"/v1/products/{secrets.randbelow(10**9) + 1}")
    return response, time.monotonic() - started


async def test_requests_answer_503_within_the_documented_bound_and_again_once_it_answers(
    cluster: ThrowawayPostgres,
    stalling_url: str,
    settings: Settings,
    logger: FilteringBoundLogger,
) -> None:
    configured = replace(
        settings,
        database_url=stalling_url,
        db_pool_min=2,
        db_pool_max=4,
        db_acquire_timeout=ACQUIRE,
        db_command_timeout=COMMAND,
        request_timeout=10.0,
    )
    app = create_app(configured, logger=logger)
    async with lifespan(app), client_for(app) as http:
        assert (await _timed_read(http))[0].status_code == 404  # an unknown id: read from PG
        await asyncio.sleep(0.6)  # one housekeeping round
        with paused(cluster):
            first = await asyncio.gather(*(_timed_read(http) for _ in range(8)))
            then = await asyncio.gather(*(_timed_read(http) for _ in range(8)))
        for response, _ in first + then:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert problem_type(response) in ("database-unavailable", "deadline-exceeded")
        # Late: those that took a connection used since the last housekeeping round. Past the
        # test's own read, only the revocation poller (every 0.75 s) touches the pool.
        late = [took for _, took in first if took > ACQUIRE + SLACK]
        assert len(late) <= 1, sorted(took for _, took in first)
        assert all(took < COMMAND + ACQUIRE + SLACK for took in late), late
        assert all(took < ACQUIRE + SLACK for _, took in then), [took for _, took in then]
        healed = time.monotonic()
        while (await _timed_read(http))[0].status_code != 404:
            assert time.monotonic() - healed < 10, "no answer from PostgreSQL 10 s after SIGCONT"
            await asyncio.sleep(0.1)
