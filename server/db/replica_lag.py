"""Which streaming replicas are in rotation: their lag, measured in WAL, not in clock time.

Every ``check()`` (four times a second) notes the primary's current LSN, and a replica stays in
rotation only while it has replayed what the primary had written ``max_lag`` seconds ago, and
answers. A replica whose replay is paused or behind, or that does not answer within the acquire
timeout, leaves rotation (a log line and ``hotpath_db_replica_in_rotation`` 0) and comes back by
itself once it has caught up.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge
from structlog.typing import FilteringBoundLogger

from server.db.database import Database
from server.runtime import background

_CHECK_SECONDS = 0.25
# Primary LSN samples: 65 s at four a second, past the largest max_lag the settings allow (60 s).
_SAMPLES_KEPT = 260


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


class LagChecks:
    """Keeps each ``Replica``'s ``in_rotation``, ``replayed`` and ``reason`` up to date;
    ``checked_at`` is when the last complete round of checks ended."""

    def __init__(
        self,
        primary: Database,
        replicas: list[Replica],
        *,
        max_lag: float,
        logger: FilteringBoundLogger,
        registry: CollectorRegistry | None,
        clock: Callable[[], float],
    ) -> None:
        self.primary = primary
        self.replicas = replicas
        self.max_lag = max_lag
        self.logger = logger
        self._clock = clock
        # (when, the primary's LSN then), oldest first
        self.samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=_SAMPLES_KEPT)
        self._rounds = 0
        self.checked_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._gauge = Gauge(
            "hotpath_db_replica_in_rotation",
            "1 while the read replica takes lag-tolerant reads (answering, within max lag).",
            ["replica"],
            registry=registry,
        )
        for replica in replicas:
            self._gauge.labels(replica.name).set(0)

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
            self.samples.append((self._clock(), lsn))
        except Exception:  # the primary's own troubles are /readyz's to report
            return
        required = self._required(self._clock())
        await asyncio.gather(*(self._check_one(replica, required) for replica in self.replicas))
        self.checked_at = self._clock()

    def start(self) -> None:
        self._task = background.repeat_async(
            _CHECK_SECONDS, self.check, name="db-replicas", logger=self.logger
        )

    async def stop(self) -> None:
        if self._task is not None:
            await background.stop(self._task)

    def _required(self, now: float) -> int | None:
        """The primary's LSN as of ``max_lag`` ago: what a replica must have replayed. None
        until a sample that old exists (then the newest sample counts)."""
        required = None
        for taken, lsn in self.samples:
            if taken > now - self.max_lag:
                break
            required = lsn
        if required is None and self.samples:
            required = self.samples[0][1]
        return required

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
