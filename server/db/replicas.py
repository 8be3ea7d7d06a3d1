"""Streaming replicas (``DATABASE_REPLICA_URLS``) for reads that tolerate a little lag: which one
such a read goes to. Which replicas are in rotation is ``replica_lag.py``'s (WAL positions,
checked four times a second); opening their pools from the settings is ``replica_pools.py``'s.
``pick()`` is a list walk with no I/O. With no replica in rotation, reads go to the primary.

Which reads may go to a replica is the caller's choice: reads that need nothing the caller
itself may just have written (``pick()``: the catalog's anonymous listings), reads whose
freshness is checked otherwise (a product on a cache miss, against the version Redis holds),
and a signed-in user's lag-tolerant reads (``for_reader()``: a replica that has replayed that
user's latest write, whose position server/db/write_marks.py keeps). docs/scaling.md says which.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter
from structlog.typing import FilteringBoundLogger

from server.db.connection import PooledConnection
from server.db.database import Database
from server.db.replica_lag import LagChecks, Replica
from server.db.write_marks import UNKNOWN_POSITION, WriteMarks, mark_ttl, writer
from server.runtime.redis_link import RedisLink

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
        self._next = 0
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
        self.lag = LagChecks(
            primary, replicas, max_lag=max_lag, logger=logger, registry=registry, clock=clock
        )

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
        if marks is not None and self._clock() - self.lag.checked_at <= STALE_AFTER:
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

    async def check(self) -> None:
        """One round of lag checks (``LagChecks.check``)."""
        await self.lag.check()

    def start(self) -> None:
        self.lag.start()

    async def close(self) -> None:
        await self.lag.stop()
        await asyncio.gather(*(replica.db.close() for replica in self.replicas))
