"""Revocations fan out between replicas: pub/sub when Redis is there, the poll when it is not."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from structlog.typing import FilteringBoundLogger

from server.auth.repository import RevocationStore
from server.auth.revocation import (
    SAFETY_POLL_SECONDS,
    Denylist,
    Revocation,
    RevocationFeed,
    RevocationKind,
    _backoff,
)
from server.db.database import Connection, Database, create_pool
from server.db.sqlfiles import load_queries
from server.runtime.redis_link import open_redis
from server.runtime.settings import Settings
from tests.fixtures.app import events
from tests.fixtures.databases import REDIS_URL
from tests.fixtures.support import ThrowawayRedis

QUERIES = load_queries()


@asynccontextmanager
async def replica(
    settings: Settings,
    logger: FilteringBoundLogger,
    redis_url: str | None,
    *,
    channel: str,
    store: RevocationStore | None = None,
    safety_poll_interval: float = 60.0,
) -> AsyncIterator[RevocationFeed]:
    """One replica's feed with its own pool and Redis link; the long safety poll means anything
    arriving within a second with Redis up came through pub/sub."""
    db = Database(await create_pool(settings.with_pool_size(1, 2)), acquire_timeout=1.0)
    try:
        async with open_redis(redis_url, timeout=0.5, logger=logger) as redis:
            feed = RevocationFeed(
                db,
                redis,
                store or RevocationStore(QUERIES),
                Denylist(),
                logger,
                channel=channel,
                safety_poll_interval=safety_poll_interval,
            )
            await feed.start()
            try:
                yield feed
            finally:
                await feed.stop()
    finally:
        await db.close()


@pytest.fixture
def channel() -> str:
    return f"hotpath:test:revocations:{uuid.uuid4().hex}"


async def create(
    conn: Connection, kind: RevocationKind, subject: str, *, ttl: float = 600
) -> Revocation:
    now = dt.datetime.now(dt.UTC)
    return await RevocationStore(QUERIES).create(
        conn, kind, subject, now, now + dt.timedelta(seconds=ttl)
    )


async def revoke(feed: RevocationFeed, kind: RevocationKind = "session") -> Revocation:
    """What a service does: the row in its transaction, published once committed."""
    async with feed.db.transaction() as conn:
        rev = await create(conn, kind, str(uuid.uuid4()))
    await feed.publish(rev)
    return rev


def knows(feed: RevocationFeed, rev: Revocation) -> bool:
    if rev.kind == "session":
        return feed.denylist.is_revoked(sid=rev.subject, sub="", iat=0)
    return feed.denylist.is_revoked(sid="", sub=rev.subject, iat=int(rev.not_before) - 1)


async def seconds_until(condition: Callable[[], bool], *, limit: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_pubsub_carries_a_revocation_to_the_other_replica_at_once(
    settings: Settings, logger: FilteringBoundLogger, log_stream: io.BytesIO, channel: str
) -> None:
    async with (
        replica(settings, logger, REDIS_URL, channel=channel) as a,
        replica(settings, logger, REDIS_URL, channel=channel) as b,
    ):
        await seconds_until(lambda: a.subscribed and b.subscribed, limit=5)
        stored = await revoke(a, "user")
        assert knows(a, stored)
        assert await seconds_until(lambda: knows(b, stored), limit=1.0) < 0.2
        # Not in PostgreSQL at all: only pub/sub can deliver it.
        assert a.redis.client is not None
        await a.redis.client.publish(channel, b"{not json")
        only_redis = Revocation(10**15, "session", str(uuid.uuid4()), time.time(), time.time() + 60)
        await a.publish(only_redis)
        assert await seconds_until(lambda: knows(b, only_redis), limit=1.0) < 0.2
    assert events(log_stream, "revocation_message_invalid")


async def test_a_lost_publish_still_reaches_a_subscribed_replica_within_a_second(
    settings: Settings, logger: FilteringBoundLogger, channel: str
) -> None:
    """Redis is up but a message never arrives (a failover, a dropped subscriber connection):
    the safety poll, at the pace a server runs it, must deliver within the second allowed."""
    async with replica(
        settings, logger, REDIS_URL, channel=channel, safety_poll_interval=SAFETY_POLL_SECONDS
    ) as b:
        await seconds_until(lambda: b.subscribed, limit=5)
        for kind in ("session", "user"):
            async with b.db.transaction() as conn:  # committed, never published
                rev = await create(conn, kind, str(uuid.uuid4()))
            await seconds_until(lambda: knows(b, rev), limit=1.0)  # noqa: B023
        assert b.subscribed, "the fallback pace, not the safety poll, delivered it"


async def test_without_redis_the_poll_delivers_within_a_second(
    settings: Settings, logger: FilteringBoundLogger, channel: str
) -> None:
    async with (
        replica(settings, logger, None, channel=channel) as a,
        replica(settings, logger, None, channel=channel) as b,
    ):
        assert not b.subscribed
        for kind in ("session", "user", "session"):
            rev = await revoke(a, kind)
            assert knows(a, rev)
            await seconds_until(lambda: knows(b, rev), limit=1.0)  # noqa: B023


async def test_a_revocation_committed_out_of_id_order_is_not_skipped(
    settings: Settings, logger: FilteringBoundLogger, channel: str
) -> None:
    async with replica(settings, logger, None, channel=channel) as b:
        async with b.db.connection() as slow_conn, slow_conn.transaction():
            slow = await create(slow_conn, "session", str(uuid.uuid4()))
            async with b.db.transaction() as fast_conn:
                fast = await create(fast_conn, "session", str(uuid.uuid4()))
            assert fast.id > slow.id
            await seconds_until(lambda: knows(b, fast), limit=1.0)
        await seconds_until(lambda: knows(b, slow), limit=1.0)


async def test_a_new_replica_loads_unexpired_revocations_and_deletes_expired_rows(
    settings: Settings, logger: FilteringBoundLogger, channel: str
) -> None:
    db = Database(await create_pool(settings.with_pool_size(1, 1)), acquire_timeout=1.0)
    try:
        async with db.transaction() as conn:
            live = [await create(conn, kind, str(uuid.uuid4())) for kind in ("session", "user")]
            dead = await create(conn, "session", str(uuid.uuid4()), ttl=-1)
        async with replica(settings, logger, None, channel=channel) as fresh:
            assert all(knows(fresh, rev) for rev in live)
            assert not knows(fresh, dead)

            async def gone() -> bool:
                async with db.connection() as conn:
                    return not await conn.fetchval(
                        "SELECT count(*) FROM revocations WHERE id = $1", dead.id
                    )

            for _ in range(40):
                if await gone():
                    break
                await asyncio.sleep(0.05)
            assert await gone()
    finally:
        await db.close()


class FlakyStore(RevocationStore):
    def __init__(self) -> None:
        super().__init__(QUERIES)
        self.failures = 0

    async def list_after(self, conn: Connection, last_id: int, limit: int) -> list[Revocation]:
        if self.failures:
            self.failures -= 1
            raise OSError("database went away")
        return await super().list_after(conn, last_id, limit)


async def test_the_poll_outlives_database_errors(
    settings: Settings, logger: FilteringBoundLogger, log_stream: io.BytesIO, channel: str
) -> None:
    store = FlakyStore()
    async with (
        replica(settings, logger, None, channel=channel) as a,
        replica(settings, logger, None, channel=channel, store=store) as b,
    ):
        store.failures = 3
        rev = await revoke(a)
        await seconds_until(lambda: knows(b, rev), limit=5.0)
        await seconds_until(lambda: bool(events(log_stream, "revocation_poll_recovered")), limit=1)
    assert len(events(log_stream, "revocation_poll_failed")) == 1  # then quiet until it recovers


async def test_a_redis_outage_falls_back_to_the_poll_then_pubsub_resumes(
    settings: Settings, logger: FilteringBoundLogger, channel: str, throwaway_redis: ThrowawayRedis
) -> None:
    url = throwaway_redis.url
    async with (
        replica(settings, logger, url, channel=channel) as a,
        replica(settings, logger, url, channel=channel) as b,
    ):
        await seconds_until(lambda: a.subscribed and b.subscribed, limit=5)
        before = await revoke(a)
        await seconds_until(lambda: knows(b, before), limit=1.0)

        throwaway_redis.kill()
        during = [await revoke(a, kind) for kind in ("session", "user")]
        for rev in during:
            await seconds_until(lambda: knows(b, rev), limit=1.0)  # noqa: B023
        assert not b.subscribed
        assert knows(b, before)  # an outage never un-revokes anything

        await asyncio.to_thread(throwaway_redis.start)
        await seconds_until(lambda: a.subscribed and b.subscribed, limit=10)
        only_redis = Revocation(10**15, "session", str(uuid.uuid4()), time.time(), time.time() + 60)
        await a.publish(only_redis)
        await seconds_until(lambda: knows(b, only_redis), limit=1.0)
        assert all(knows(b, rev) for rev in [before, *during])


async def test_a_replica_started_while_redis_is_down_subscribes_when_it_comes_up(
    settings: Settings, logger: FilteringBoundLogger, channel: str
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    server = ThrowawayRedis()
    try:
        async with (
            replica(settings, logger, None, channel=channel) as a,
            replica(settings, logger, server.url, channel=channel) as b,
        ):
            assert b.redis.client is None
            rev = await revoke(a)
            await seconds_until(lambda: knows(b, rev), limit=1.0)

            await asyncio.to_thread(server.start)
            await seconds_until(lambda: b.subscribed, limit=10)
            async with open_redis(server.url, timeout=0.5, logger=logger) as publisher:
                assert publisher.client is not None
                only_redis = Revocation(10**15, "user", "42", time.time(), time.time() + 60)
                await publisher.client.publish(channel, only_redis.to_json())
            await seconds_until(lambda: knows(b, only_redis), limit=1.0)
    finally:
        server.kill()


def test_the_retry_backoff_stays_short_however_long_the_outage() -> None:
    assert [_backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert _backoff(100_000) == 2.0
