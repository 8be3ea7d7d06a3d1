"""Streaming replicas (``DATABASE_REPLICA_URLS``) for reads that tolerate a little lag, and which
of them may take those reads right now.

Lag is measured in WAL, not in clock time: every ``check()`` (four times a second) notes the
primary's current LSN, and a replica stays in rotation only while it has replayed what the
primary had written ``max_lag`` seconds ago, and answers. A replica whose replay is paused or
behind, or that does not answer within the acquire timeout, leaves rotation (a log line and
``hotpath_db_replica_in_rotation`` 0) and comes back by itself once it has caught up.
``pick()`` is then a list walk with no I/O. With no replica in rotation, reads go to the
primary.

Which reads may go to a replica is the caller's choice: reads that need nothing the caller
itself may just have written (``pick()``: the catalog's anonymous listings), reads whose
freshness is checked otherwise (a product on a cache miss, against the version Redis holds),
and a signed-in user's lag-tolerant reads (``for_reader()``: a replica that has replayed that
user's latest write, whose position server/db/write_marks.py keeps). docs/scaling.md says which.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from structlog.typing import FilteringBoundLogger

from server.db.connection import PooledConnection
from server.db.database import Database, open_pool
from server.db.write_marks import UNKNOWN_POSITION, WriteMarks, mark_ttl, writer
from server.runtime import background
from server.runtime.redis_link import RedisLink
from server.runtime.settings import Settings

_CHECK_SECONDS = 0.25
# Primary LSN samples: 65 s at four a second, past the largest max_lag the settings allow (60 s).
_SAMPLES_KEPT = 260
# A signed-in reader's read goes to a replica only while the last complete round of checks is
# at most this old: the write marks' lifetime counts on it (write_marks.mark_ttl).
STALE_AFTER = 2.0
# The insert position, not the write position: with synchronous_commit off the commit record
# may not be written yet when COMMIT returns. asyncpg reads a pg_lsn as an int.
_INSERT_POSITION = "SELECT pg_current_wal_insert_lsn()"
# Where lag-tolerant reads went, and why: (target, reason).
_ROUTES = (
    ("replica", "in_rotation"),
    ("primary", "none_in_rotation"),
    ("primary", "behind_reader"),
    ("primary", "writes_unknown"),
)


def parse_lsn(text: str) -> int:
    """A pg_lsn's text ("16/B374D848") as the byte position it names."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Replica:
    name: str  # its position in DATABASE_REPLICA_URLS, for logs and metrics (never the URL)
    db: Database
    in_rotation: bool = False
    replayed: int = 0  # the replay LSN it reported last
    reason: str = "not checked yet"


class ReplicaSet:
    def __init__(
        self,
        primary: Database,
        replicas: list[Replica],
        *,
        max_lag: float,
        logger: FilteringBoundLogger,
        registry: CollectorRegistry | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replicas = replicas
        self.max_lag = max_lag
        self.logger = logger
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque(
            maxlen=_SAMPLES_KEPT
        )
        self._next = 0
        self._rounds = 0
        self._checked_at = -float("inf")  # when the last complete round of checks ended
        self._task: asyncio.Task[None] | None = None
        # Signed-in users' latest writes (server/db/write_marks.py); the container attaches them
        # once Redis is open. Until then, and without Redis, signed-in readers get the primary.
        self.marks: WriteMarks | None = None
        self.signed_in_reads = True
        routed = Counter(
            "hotpath_db_lag_tolerant_reads",
            "Reads that tolerate replica lag, by where they went (target) and why (reason).",
            ["target", "reason"],
            registry=registry,
        )
        self._routed = {route: routed.labels(*route) for route in _ROUTES}
        self._gauge = Gauge(
            "hotpath_db_replica_in_rotation",
            "1 while the read replica takes lag-tolerant reads (answering, within max lag).",
            ["replica"],
            registry=registry,
        )
        for replica in replicas:
            self._gauge.labels(replica.name).set(0)

    def pick(self) -> Database:
        """A replica in rotation (round robin), or the primary when none is."""
        replicas = self.replicas
        for _ in range(len(replicas)):
            replica = replicas[self._next % len(replicas)]
            self._next += 1
            if replica.in_rotation:
                self._routed["replica", "in_rotation"].inc()
                return replica.db
        self._routed["primary", "none_in_rotation"].inc()
        return self.primary

    async def for_reader(self, user_id: int) -> Database:
        """For a signed-in user's lag-tolerant read: a replica in rotation (round robin) whose
        last checked replay position is past that user's latest write, else the primary. Redis
        is asked only while some replica is in rotation and the checks are recent."""
        replicas = self.replicas
        if not any(replica.in_rotation for replica in replicas):
            self._routed["primary", "none_in_rotation"].inc()
            return self.primary
        marks = self.marks
        needed = None
        if marks is not None and self._clock() - self._checked_at <= STALE_AFTER:
            needed = await marks.needed(user_id)
        if needed is None:
            self._routed["primary", "writes_unknown"].inc()
            return self.primary
        for _ in range(len(replicas)):
            replica = replicas[self._next % len(replicas)]
            self._next += 1
            if replica.in_rotation and replica.replayed >= needed:
                self._routed["replica", "in_rotation"].inc()
                return replica.db
        self._routed["primary", "behind_reader"].inc()
        return self.primary

    async def after_commit(self, conn: PooledConnection) -> tuple[int, int] | None:
        """(user, position) of a write just committed on ``conn`` for a signed-in request, for
        ``remember()`` once ``conn`` is back in the pool; None when there is no one to keep
        it for. The primary's WAL insert position, read after the commit, is past the commit."""
        user = writer()
        if user is None or self.marks is None:
            return None
        try:
            position = int(await conn.fetchval(_INSERT_POSITION))
        except Exception:
            # The write committed; its answer must not fail now. The connection is unfit for
            # reuse (a statement may be in flight), and the writer reads the primary a while.
            conn.terminate()
            position = UNKNOWN_POSITION
        return user, position

    def follow_writes(self, redis: RedisLink, namespace: str) -> None:
        """Keep signed-in users' write positions in this Redis, for ``for_reader()``; not with
        ``signed_in_reads`` off (HOTPATH_REPLICA_SIGNED_IN_READS=false), where their reads go
        to the primary and their writes cost nothing more."""
        if not self.signed_in_reads:
            return
        ttl = mark_ttl(self.max_lag, STALE_AFTER)
        self.marks = WriteMarks(redis, self.logger, namespace=namespace, ttl=ttl)

    async def remember(self, user_id: int, position: int) -> None:
        if self.marks is not None:
            await self.marks.record(user_id, position)

    def _required(self, now: float) -> int | None:
        """The primary's LSN as of ``max_lag`` ago: what a replica must have replayed. None
        until a sample that old exists (then the newest sample counts)."""
        required = None
        for taken, lsn in self._samples:
            if taken > now - self.max_lag:
                break
            required = lsn
        if required is None and self._samples:
            required = self._samples[0][1]
        return required

    async def check(self) -> None:
        """One round: the primary's LSN, then each replica's replay position. Every other
        round also does for the replicas' pools what the app's housekeeping does for the
        primary's (server/db/pool.py): idle connections past the minimum closed, the others
        probed before their next use."""
        self._rounds += 1
        if self._rounds % 2 == 0:
            for replica in self.replicas:
                replica.db.pool.retire_idle()
        try:
            async with self.primary.connection() as conn:
                lsn = parse_lsn(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))
            self._samples.append((self._clock(), lsn))
        except Exception:  # the primary's own troubles are /readyz's to report
            return
        required = self._required(self._clock())
        await asyncio.gather(*(self._check_one(replica, required) for replica in self.replicas))
        self._checked_at = self._clock()

    async def _check_one(self, replica: Replica, required: int | None) -> None:
        try:
            async with replica.db.connection() as conn:
                replayed = await conn.fetchval("SELECT pg_last_wal_replay_lsn()::text")
        except Exception as exc:
            self._set(replica, False, f"unavailable: {type(exc).__name__}")
            return
        if replayed is None:
            self._set(replica, False, "not a standby (pg_last_wal_replay_lsn is null)")
            return
        replica.replayed = parse_lsn(replayed)
        if required is not None and replica.replayed < required:
            self._set(replica, False, f"lagging more than {self.max_lag:g} s")
        else:
            self._set(replica, True, "caught up")

    def _set(self, replica: Replica, in_rotation: bool, reason: str) -> None:
        replica.reason = reason
        if replica.in_rotation == in_rotation:
            return
        replica.in_rotation = in_rotation
        self._gauge.labels(replica.name).set(1 if in_rotation else 0)
        if in_rotation:
            self.logger.info("db_replica_in_rotation", replica=replica.name, reason=reason)
        else:
            self.logger.warning("db_replica_out_of_rotation", replica=replica.name, reason=reason)

    def start(self) -> None:
        self._task = background.repeat_async(
            _CHECK_SECONDS, self.check, name="db-replicas", logger=self.logger
        )

    async def close(self) -> None:
        if self._task is not None:
            await background.stop(self._task)
        await asyncio.gather(*(replica.db.close() for replica in self.replicas))


async def attach_replicas(
    db: Database,
    settings: Settings,
    *,
    statement_cache_size: int,
    logger: FilteringBoundLogger,
    registry: CollectorRegistry | None,
) -> ReplicaSet | None:
    """With DATABASE_REPLICA_URLS set: the replica set, attached to ``db`` (its
    ``lag_tolerant()`` reads) and checking; close it after ``db``'s users are done."""
    if not settings.database_replica_urls:
        return None
    replicas = await open_replicas(
        db,
        settings.database_replica_urls,
        pool_max=settings.db_pool_max,
        acquire_timeout=settings.db_acquire_timeout,
        command_timeout=settings.db_command_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_cache_size=0 if settings.db_pooler == "transaction" else statement_cache_size,
        max_lag=settings.replica_max_lag,
        logger=logger,
        registry=registry,
    )
    replicas.signed_in_reads = settings.replica_signed_in_reads
    await replicas.check()  # in rotation from the first request, when caught up
    replicas.start()
    db.replicas = replicas
    return replicas


async def open_replicas(
    primary: Database,
    urls: tuple[str, ...],
    *,
    pool_max: int,
    acquire_timeout: float,
    command_timeout: float,
    connect_timeout: float,
    statement_cache_size: int,
    max_lag: float,
    logger: FilteringBoundLogger,
    registry: CollectorRegistry | None,
) -> ReplicaSet:
    """A pool per replica, opened with no connection yet: a replica down at start-up is only
    out of rotation, never a reason not to start."""
    replicas = []
    for index, url in enumerate(urls):
        pool = await open_pool(
            url,
            min_size=0,
            max_size=pool_max,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
            statement_cache_size=statement_cache_size,
        )
        replicas.append(Replica(str(index), Database(pool, acquire_timeout=acquire_timeout)))
        logger.info("db_replica_configured", replica=str(index))
    return ReplicaSet(primary, replicas, max_lag=max_lag, logger=logger, registry=registry)
