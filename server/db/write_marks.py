"""Read-your-writes across read replicas: how far into the primary's WAL each signed-in user's
latest write went, so that user's lag-tolerant reads go to a replica that has replayed it.

The authenticator names the user a request acts for (``acting_for``). When a transaction of
such a request commits, ``Database.transaction`` asks the primary for its WAL insert position
on the same connection (one more round trip, and only with ``DATABASE_REPLICA_URLS`` set) and
``record()`` keeps it in Redis under the user's id, the largest one winning, for ``ttl``
seconds: past that every replica in rotation has replayed it anyway (``mark_ttl``). Any replica
of hotpath reads it back (one ``GET``) before it routes that user's lag-tolerant read
(``ReplicaSet.for_reader``): to a replica whose last checked replay position is at least the
mark, else to the primary. No mark: any replica in rotation. Redis not configured, not
answering, or failed within the last second: the primary, which is always current.

A process keeps its own writers' marks too (``_local``): it sends them to Redis again once
Redis answers after a failure, and reads them itself whatever Redis says. A mark Redis loses
after taking it (a flush, a cluster failover that lost the write) lets that user read a replica
without the write through another process, for at most the replica lag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextvars import ContextVar
from itertools import islice

from structlog.typing import FilteringBoundLogger

from server.runtime import background
from server.runtime.pubsub import error_name
from server.runtime.redis_client import RedisClient
from server.runtime.redis_link import RedisLink
from server.runtime.redis_script import RedisScript

# A position no replica reaches: the write's own position could not be read (its connection
# failed after the commit), so its writer reads the primary until the mark expires.
UNKNOWN_POSITION = 2**62

# The largest position wins; every write renews the mark's lifetime. One key, as every script.
_KEEP_LARGEST = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_REDIS_PAUSE = 1.0  # after a failure, signed-in reads go to the primary without asking Redis
_LOCAL_KEPT = 10_000

_WRITER: ContextVar[int | None] = ContextVar("hotpath_writer", default=None)


def acting_for(user_id: int) -> None:
    """The current request acts for this user: what it commits is that user's write. Set
    without a reset, as the request's deadline is (middleware/deadline.py): granian runs each
    request in a task of its own, whose context dies with it."""
    _WRITER.set(user_id)


def writer() -> int | None:
    """The user the current request acts for; None outside a signed-in request."""
    return _WRITER.get()


def mark_ttl(max_lag: float, stale_after: float) -> float:
    """How long a mark must last: a replica in rotation has replayed the primary's position of
    ``max_lag`` before its last check, checks are at most ``stale_after`` old when trusted
    (ReplicaSet.for_reader), and the samples compared are at most that far apart; a second more
    for the round trips. Past it, every replica in rotation has the write."""
    return max_lag + 2 * stale_after + 1.0


class WriteMarks:
    """Each user's latest write position, shared through Redis by every replica of hotpath."""

    def __init__(
        self,
        redis: RedisLink,
        logger: FilteringBoundLogger,
        *,
        namespace: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.logger = logger
        self.namespace = namespace
        self.ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._clock = clock
        self._script = RedisScript(_KEEP_LARGEST)
        # user id -> (expiry, position): this process's own writers, should Redis miss a mark.
        self._local: dict[int, tuple[float, int]] = {}
        self._paused_until = 0.0
        self._down = False
        self._resending: asyncio.Task[None] | None = None

    def key(self, user_id: int) -> str:
        return f"{self.namespace}:wrote:{user_id}"

    async def record(self, user_id: int, position: int) -> None:
        """Once the write committed, before its answer is sent; never raises for Redis."""
        self._remember_locally(user_id, position)
        await self._send(user_id, position)

    async def _send(self, user_id: int, position: int) -> bool:
        client = self._client()
        if client is None:
            return False
        try:
            async with asyncio.timeout(self.redis.timeout):
                await self._script.run(client, [self.key(user_id)], [position, self._ttl_ms])
        except Exception as exc:
            self._failed("record", exc)
            return False
        self._ok()
        return True

    async def _resend(self) -> None:
        """After Redis failed: this process's marks again (those it could not send among them),
        so that the other processes see them too. Each renews its full lifetime: longer is
        safe."""
        now = self._clock()
        for user_id, (expiry, position) in list(self._local.items()):
            if expiry > now and not await self._send(user_id, position):
                return

    async def needed(self, user_id: int) -> int | None:
        """The WAL position a replica must have replayed to show this user's recent writes (0:
        none lately), or None when that is not known (no Redis answering): only the primary
        will do then."""
        client = self._client()
        if client is None:
            return None
        try:
            async with asyncio.timeout(self.redis.timeout):
                raw = await client.get(self.key(user_id))
            self._ok()
        except Exception as exc:
            self._failed("read", exc)
            return None
        position = 0 if raw is None else int(raw)
        local = self._local.get(user_id)
        if local is not None:
            if local[0] > self._clock():
                return max(position, local[1])
            del self._local[user_id]
        return position

    def _remember_locally(self, user_id: int, position: int) -> None:
        local = self._local
        previous = local.pop(user_id, None)  # re-inserted at the end: oldest first
        if previous is not None:
            position = max(position, previous[1])
        elif len(local) >= _LOCAL_KEPT:
            for oldest in list(islice(local, _LOCAL_KEPT // 100)):
                del local[oldest]
        local[user_id] = (self._clock() + self.ttl, position)

    def _client(self) -> RedisClient | None:
        if self._paused_until and self._clock() < self._paused_until:
            return None
        return self.redis.client

    def _ok(self) -> None:
        if self._down:
            self._down = False
            self._paused_until = 0.0
            self.logger.info("write_marks_redis_recovered")
            if self._resending is None or self._resending.done():
                self._resending = background.spawn_detached(self._resend(), name="write-marks")

    def _failed(self, operation: str, exc: Exception) -> None:
        self._paused_until = self._clock() + _REDIS_PAUSE
        if not self._down:
            self._down = True
            self.logger.warning(
                "write_marks_redis_failed",
                operation=operation,
                error=error_name(exc),
                detail="signed-in users' lag-tolerant reads go to the primary meanwhile",
            )
