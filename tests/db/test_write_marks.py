"""Read-your-writes on read replicas, piece by piece: the users' write marks in Redis (the shared
one, keys of this test's own namespace), the routing of a signed-in user's read by them, and
what a commit notes. tests/db/test_read_replicas.py runs the whole on a real streaming standby.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.db.replica_lag import Replica
from server.db.replicas import STALE_AFTER, ReplicaSet
from server.db.write_marks import UNKNOWN_POSITION, WriteMarks, acting_for, mark_ttl, writer
from server.runtime.redis_link import RedisLink, open_redis
from tests.fixtures.clock import Clock
from tests.fixtures.shared_redis import redis_namespace, shared_redis_link
from tests.fixtures.support import free_port

__all__ = ["redis_namespace", "shared_redis_link"]  # fixtures: namespace, link


async def test_a_mark_keeps_the_largest_position_for_its_lifetime(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    marks = WriteMarks(link, logger, namespace=namespace, ttl=30.0)
    elsewhere = WriteMarks(link, logger, namespace=namespace, ttl=30.0)  # another process
    assert await elsewhere.needed(7) == 0  # no write lately: any replica in rotation will do
    await marks.record(7, 5000)
    await marks.record(7, 4000)  # an earlier commit whose record arrives late
    assert await elsewhere.needed(7) == 5000
    assert await elsewhere.needed(8) == 0  # marks are per user
    assert link.client is not None
    assert 0 < await link.client.pttl(marks.key(7)) <= 30_000
    await marks.record(7, 6000)
    assert await elsewhere.needed(7) == 6000


async def test_this_process_remembers_its_writers_when_redis_lost_the_mark(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    marks = WriteMarks(link, logger, namespace=namespace, ttl=30.0)
    await marks.record(7, 5000)
    assert link.client is not None
    await link.client.delete([marks.key(7)])  # a flush, a failover that lost the write
    assert await marks.needed(7) == 5000


async def test_without_redis_a_signed_in_readers_writes_are_unknown(
    logger: FilteringBoundLogger, namespace: str
) -> None:
    async with open_redis(None, timeout=0.5, logger=logger) as link:
        marks = WriteMarks(link, logger, namespace=namespace, ttl=30.0)
        await marks.record(7, 5000)  # never raises
        assert await marks.needed(7) is None
    down = RedisLink(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, logger=logger)
    assert await WriteMarks(down, logger, namespace=namespace, ttl=30.0).needed(7) is None


async def test_after_a_redis_failure_reads_skip_it_a_second(
    link: RedisLink,
    logger: FilteringBoundLogger,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    marks = WriteMarks(link, logger, namespace=namespace, ttl=30.0, clock=clock)
    client = link.client
    assert client is not None
    calls = []

    async def failing(key: str) -> str:
        calls.append(key)
        raise ConnectionError("redis went away")

    monkeypatch.setattr(client, "get", failing)
    assert await marks.needed(7) is None
    assert await marks.needed(7) is None  # paused: not asked again
    assert len(calls) == 1
    monkeypatch.undo()
    clock.now += 1.5
    assert await marks.needed(7) == 0


async def test_marks_taken_while_redis_failed_reach_it_once_it_answers(
    link: RedisLink,
    logger: FilteringBoundLogger,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    marks = WriteMarks(link, logger, namespace=namespace, ttl=30.0, clock=clock)
    elsewhere = WriteMarks(link, logger, namespace=namespace, ttl=30.0)

    class Failing:
        async def run(self, *args: object) -> None:
            raise ConnectionError("redis went away")

    monkeypatch.setattr(marks, "_script", Failing())
    await marks.record(7, 5000)
    monkeypatch.undo()
    assert await elsewhere.needed(7) == 0  # Redis never got it
    assert await marks.needed(7) is None  # paused after the failure: the primary
    clock.now += 1.5
    assert await marks.needed(7) == 5000  # its own writer's, Redis answering again
    assert marks._resending is not None
    await marks._resending
    assert await elsewhere.needed(7) == 5000


class FakeMarks:
    def __init__(self, needed: int | None) -> None:
        self.value = needed
        self.asked = 0

    async def needed(self, user_id: int) -> int | None:
        self.asked += 1
        return self.value


class Named:
    """A stand-in for a Database: only its identity matters to the routing."""

    def __init__(self, name: str) -> None:
        self.name = name


def replica_set(
    logger: FilteringBoundLogger, registry: CollectorRegistry, clock: Clock, marks: FakeMarks
) -> tuple[ReplicaSet, Any, Any]:
    primary, standby = Named("primary"), Named("standby")
    found = ReplicaSet(
        primary,  # type: ignore[arg-type]
        [Replica("0", standby, in_rotation=True, replayed=1000)],  # type: ignore[arg-type]
        max_lag=1.0,
        logger=logger,
        registry=registry,
        clock=clock,
    )
    found.marks = marks  # type: ignore[assignment]
    found.lag.checked_at = clock.now
    return found, primary, standby


def routed(registry: CollectorRegistry, target: str, reason: str) -> float:
    value = registry.get_sample_value(
        "hotpath_db_lag_tolerant_reads_total", {"target": target, "reason": reason}
    )
    return value or 0.0


async def test_a_signed_in_read_goes_to_a_replica_only_past_the_readers_write(
    logger: FilteringBoundLogger,
) -> None:
    clock, registry = Clock(), CollectorRegistry()
    marks = FakeMarks(0)
    found, primary, standby = replica_set(logger, registry, clock, marks)

    assert await found.for_reader(7) is standby  # no write lately
    marks.value = 1000  # a write the standby has replayed
    assert await found.for_reader(7) is standby
    marks.value = 1001  # one it has not
    assert await found.for_reader(7) is primary
    assert routed(registry, "primary", "behind_reader") == 1
    assert routed(registry, "replica", "in_rotation") == 2

    marks.value = None  # Redis not answering
    assert await found.for_reader(7) is primary
    assert routed(registry, "primary", "writes_unknown") == 1

    marks.value = 0
    clock.now += STALE_AFTER + 0.1  # the checks stopped: the marks' lifetime counts on them
    assert await found.for_reader(7) is primary
    assert routed(registry, "primary", "writes_unknown") == 2

    found.lag.checked_at = clock.now
    found.replicas[0].in_rotation = False
    asked = marks.asked
    assert await found.for_reader(7) is primary
    assert marks.asked == asked  # none in rotation: Redis is not asked
    assert found.pick() is primary
    assert routed(registry, "primary", "none_in_rotation") == 2


def test_a_mark_outlives_the_lag_a_replica_in_rotation_may_have() -> None:
    # Checked up to STALE_AFTER ago, judged against a sample up to STALE_AFTER older than
    # max_lag: past the mark's lifetime every replica in rotation has the write.
    for max_lag in (0.05, 1.0, 60.0):
        assert mark_ttl(max_lag, STALE_AFTER) > max_lag + 2 * STALE_AFTER


class FakeConnection:
    def __init__(self, position: int | Exception) -> None:
        self.position = position
        self.terminated = False

    async def fetchval(self, query: str) -> Any:
        assert query == "SELECT pg_current_wal_insert_lsn()"
        if isinstance(self.position, Exception):
            raise self.position
        return self.position

    def terminate(self) -> None:
        self.terminated = True


async def test_a_commit_is_noted_for_the_user_the_request_acts_for(
    logger: FilteringBoundLogger,
) -> None:
    clock, registry = Clock(), CollectorRegistry()
    found, _, _ = replica_set(logger, registry, clock, FakeMarks(0))

    async def commit(conn: FakeConnection, user: int | None) -> tuple[int, int] | None:
        # In a task of its own, as granian runs each request: acting_for stays in it.
        if user is not None:
            acting_for(user)
        return await found.after_commit(conn)  # type: ignore[arg-type]

    def in_request(conn: FakeConnection, user: int | None) -> Any:
        return asyncio.create_task(commit(conn, user), context=contextvars.copy_context())

    assert await in_request(FakeConnection(123456), 7) == (7, 123456)
    assert await in_request(FakeConnection(123456), None) is None  # anonymous, or a worker
    assert writer() is None  # nothing leaked out of the requests' tasks

    broken = FakeConnection(ConnectionResetError("gone after the commit"))
    assert await in_request(broken, 7) == (7, UNKNOWN_POSITION)  # the primary, a while
    assert broken.terminated  # not reused: a statement may be in flight on it

    found.marks = None  # no Redis attached yet: nothing to keep it in, no round trip
    quiet = FakeConnection(ConnectionResetError("must not be asked"))
    assert await in_request(quiet, 7) is None
    assert not quiet.terminated


async def test_with_signed_in_reads_off_no_marks_are_kept(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    """HOTPATH_REPLICA_SIGNED_IN_READS=false: signed-in readers get the primary, and their
    commits cost no LSN round trip and no Redis command."""
    clock, registry = Clock(), CollectorRegistry()
    found, primary, _ = replica_set(logger, registry, clock, FakeMarks(0))
    found.marks = None
    found.signed_in_reads = False
    found.follow_writes(link, namespace)
    assert found.marks is None
    assert await found.for_reader(7) is primary
    quiet = FakeConnection(ConnectionResetError("must not be asked"))

    async def commit() -> tuple[int, int] | None:
        acting_for(7)
        return await found.after_commit(quiet)  # type: ignore[arg-type]

    assert await asyncio.create_task(commit(), context=contextvars.copy_context()) is None
    assert not quiet.terminated
    found.signed_in_reads = True
    found.follow_writes(link, namespace)
    assert found.marks is not None
