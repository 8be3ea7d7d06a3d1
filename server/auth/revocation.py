"""Revocations: durable in PostgreSQL, fanned out to every replica's in-process denylist.

A service writes the row inside its own transaction (``RevocationStore.create``, in
repository.py) and hands it to ``RevocationFeed.publish`` once committed. Redis pub/sub carries
it to the other replicas at once; a poll of PostgreSQL by id delivers it within
``poll_interval`` whenever the subscription is down, and within ``safety_poll_interval``
otherwise, so neither a Redis outage nor one lost publish delays it by a second or more, and
neither loses it. The poll is one primary-key range read per interval
and replica (``list_revocations_after``), off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from structlog.typing import FilteringBoundLogger

from server.auth.denylist import Denylist, Revocation, RevocationKind
from server.auth.repository import RevocationStore
from server.db.database import Database
from server.runtime.pubsub import error_name, follow_channel, publish
from server.runtime.redis_link import RedisLink

__all__ = [
    "SAFETY_POLL_SECONDS",
    "Denylist",
    "Revocation",
    "RevocationFeed",
    "RevocationKind",
]

_PAGE = 1000
# The poll's pace while pub/sub is up. Under a second: a publish lost on its way (a failover, a
# dropped subscriber connection) must still reach every replica within 1 s, wait and read included.
SAFETY_POLL_SECONDS = 0.75
_MAX_BACKOFF = 2.0
_PRUNE_SECONDS = 30.0
_CLEANUP_SECONDS = 300.0
# Ids a poll skipped are re-read this long (in-flight transactions), then taken as rolled back.
_GAP_SECONDS = 60.0
_MAX_GAPS = 1000


class _Cursor:
    """Where the poll resumes: after the highest id read, plus the skipped ids still pending."""

    def __init__(self) -> None:
        self.high = 0
        self._gaps: dict[int, float] = {}

    def advance(self, rev_id: int, now: float) -> None:
        if rev_id <= self.high:
            self._gaps.pop(rev_id, None)
            return
        # Ids below the first row read at start-up belong to expired rows, not to open transactions.
        first = max(self.high + 1, rev_id - _MAX_GAPS) if self.high else rev_id
        for missing in range(first, rev_id):
            self._gaps[missing] = now + _GAP_SECONDS
        self.high = rev_id
        if len(self._gaps) > _MAX_GAPS:
            # Transactions still in flight hold the newest ids; the oldest gaps go first.
            for old in sorted(self._gaps)[: len(self._gaps) - _MAX_GAPS]:
                del self._gaps[old]

    def pending(self, now: float) -> list[int]:
        self._gaps = {rev_id: until for rev_id, until in self._gaps.items() if until > now}
        return sorted(self._gaps)


def _backoff(failures: int) -> float:
    # The exponent is capped: a float power overflows after ~1000 failures, i.e. a long outage.
    return min(_MAX_BACKOFF, 0.25 * 2.0 ** min(failures, 16))


class RevocationFeed:
    """Keeps ``denylist`` current: loaded at start, then pub/sub, with a PostgreSQL poll behind."""

    def __init__(
        self,
        db: Database,
        redis: RedisLink,
        store: RevocationStore,
        denylist: Denylist,
        logger: FilteringBoundLogger,
        *,
        channel: str = "hotpath:revocations",
        poll_interval: float = 0.5,
        safety_poll_interval: float = SAFETY_POLL_SECONDS,
    ) -> None:
        self.db = db
        self.redis = redis
        self.store = store
        self.denylist = denylist
        self.logger = logger
        self.channel = channel
        self.poll_interval = poll_interval
        self.safety_poll_interval = safety_poll_interval
        self._cursor = _Cursor()
        self.subscribed = False  # whether pub/sub is live; the poll slows down while it is
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Load every unexpired revocation, then follow; raises if PostgreSQL cannot answer."""
        await self._catch_up()
        self.logger.info("revocations_loaded", count=len(self.denylist), last_id=self._cursor.high)
        self._tasks.append(asyncio.create_task(self._poll_forever(), name="revocation-poll"))
        if self.redis.configured:
            task = asyncio.create_task(self._subscribe_forever(), name="revocation-subscribe")
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def publish(self, rev: Revocation) -> None:
        """Call after the revoking transaction committed: local at once, then every replica."""
        self.denylist.apply(rev)
        client = self.redis.client
        if client is None:
            return
        try:
            async with asyncio.timeout(self.redis.timeout):
                await publish(client, self.channel, rev.to_json())
        except Exception as exc:
            self.logger.warning(
                "revocation_publish_failed",
                revocation_id=rev.id,
                error=error_name(exc),
                detail="other replicas get it from the PostgreSQL poll",
            )

    async def _catch_up(self) -> None:
        now = time.monotonic()
        async with self.db.connection() as conn:
            if pending := self._cursor.pending(now):
                for rev in await self.store.list_by_id(conn, pending):
                    self._take(rev, now)
            while True:
                page = await self.store.list_after(conn, self._cursor.high, _PAGE)
                for rev in page:
                    self._take(rev, now)
                if len(page) < _PAGE:
                    return

    def _take(self, rev: Revocation, now: float) -> None:
        # Only PostgreSQL moves the cursor: a stray message on the channel cannot make us skip ids.
        self.denylist.apply(rev)
        self._cursor.advance(rev.id, now)

    def _set_subscribed(self, subscribed: bool) -> None:
        if subscribed != self.subscribed:
            self.subscribed = subscribed
            self._wake.set()  # the poller catches up at once and picks its new pace

    async def _poll_forever(self) -> None:
        failures = 0
        next_prune = time.monotonic() + _PRUNE_SECONDS
        next_cleanup = time.monotonic()
        while True:
            pace = self.safety_poll_interval if self.subscribed else self.poll_interval
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the wait ends, and stop() would then hang on this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(pace, _backoff(failures))):
                    await self._wake.wait()
            self._wake.clear()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + _PRUNE_SECONDS
                self.denylist.prune(time.time())
            try:
                await self._catch_up()
                if time.monotonic() >= next_cleanup:
                    # Spread out so replicas started together do not all delete at once.
                    next_cleanup = time.monotonic() + _CLEANUP_SECONDS * random.uniform(0.5, 1.5)
                    async with self.db.connection() as conn:
                        deleted = await self.store.delete_expired(conn)
                    if deleted:
                        self.logger.info("revocations_expired_deleted", count=deleted)
            except Exception as exc:
                log = self.logger.warning if failures == 0 else self.logger.debug
                log("revocation_poll_failed", error=error_name(exc), failures=failures + 1)
                failures += 1
            else:
                if failures:
                    self.logger.info("revocation_poll_recovered", failures=failures)
                failures = 0

    async def _subscribe_forever(self) -> None:
        await follow_channel(
            self.redis,
            self.channel,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            logger=self.logger,
            event="revocation",
        )

    def _on_subscribed(self, subscribed: bool) -> None:
        if subscribed:
            self.logger.info("revocation_subscribed", channel=self.channel)
        self._set_subscribed(subscribed)

    def _on_message(self, data: object) -> None:
        try:
            rev = Revocation.from_json(data)
        except (ValueError, TypeError, KeyError) as exc:
            self.logger.warning("revocation_message_invalid", error=type(exc).__name__)
            return
        self.denylist.apply(rev)
