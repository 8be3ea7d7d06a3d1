"""Following the product cache's invalidation channel, and knowing that it is followed.

A stalled Redis (paused, or a partition that sends no RST) leaves the subscription looking up
for seconds, until a keepalive fails. So each process publishes a heartbeat on the channel every
``HEARTBEAT`` seconds and trusts its long-lived copies only while one it sent at most
``_HEARD_WITHIN`` ago has come back: an invalidation published before that heartbeat has been
delivered before it.

``on_gap`` is called when invalidations may have been lost: the subscription came up or went
down (messages sent while it was away are lost); a heartbeat of ours that Redis took did not
come back before a later one (the subscription missed messages without breaking: a failover to
a replica, a slot moving); or a heartbeat of ours was not taken in time (an outage: other
processes' invalidations of the moment may have failed too, and are sent again later, after
heartbeats may already vouch again). Heartbeats that come back late but in order on the same
subscription are not a gap: the channel is one ordered stream, so every invalidation published
before them has been delivered before them. That is a process too busy to read its socket
promptly (its CPU saturated), which used to drop every copy then, and so load more, and fall
further behind.

``behind`` tells the two kinds of overdue apart: it is set when this process's own loop started
the last heartbeat late (a timer that fired ``_BEHIND`` or more after it was due), which a
stalled Redis does not do. A cache read that finds heartbeats overdue while this process is
behind waits for the next heartbeat heard (``next_heard``) instead of loading: the heartbeat
comes back after every invalidation published before it, so a copy still held then is as good
as one served while followed, and the wait adds no work to a process already short of CPU.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from server.runtime.pubsub import follow_channel, publish
from server.runtime.redis_link import RedisLink

HEARTBEAT = 0.2
_HEARD_WITHIN = 0.5
_BEAT = "~"  # heartbeats start with it; an invalidation is a bare product id
# Heartbeats taken and not heard back kept at most (200 s of them): past that the subscription
# hears none of ours while it looks up, and the next one heard is taken as a gap.
_MAX_AWAITED = 1000
# A heartbeat started this much after it was due: this process's loop is behind (see above).
_BEHIND = 0.05


class InvalidationFollower:
    """Calls ``on_invalidated`` with each product id published on ``channel``; ``followed_until``
    is when the last heartbeat heard back stops vouching (0 until one comes back)."""

    def __init__(
        self,
        redis: RedisLink,
        logger: FilteringBoundLogger,
        *,
        channel: str,
        clock: Callable[[], float],
        on_invalidated: Callable[[int], None],
        on_gap: Callable[[], None],
    ) -> None:
        self.redis = redis
        self.logger = logger
        self.channel = channel
        self._clock = clock
        self._on_invalidated = on_invalidated
        self._on_gap = on_gap
        self.subscribed = False
        self._beat_prefix = f"{_BEAT}{secrets.token_hex(8)} "
        self.followed_until = 0.0
        self._beats = 0  # heartbeats sent, numbered from 1 in the message
        self._subscriptions = 0  # subscriptions up or down so far: whose heartbeat is whose
        self._heard_last = 0  # the highest heartbeat number heard back
        # Heartbeats Redis took (publish answered) on this subscription, not yet heard back.
        self._awaited: set[int] = set()
        self._doubt = False  # a gap the next heartbeat heard back reports
        self._due = 0.0  # when the next heartbeat should start: the last one's end + HEARTBEAT
        self.behind = False  # this process started the last heartbeat late: its loop is busy
        self._waited_in_vain = False  # a wait for next_heard timed out: Redis is late too
        self._next_heard: asyncio.Future[None] | None = None

    @property
    def following(self) -> bool:
        """Whether invalidations are known to arrive (a recent heartbeat came back)."""
        return self.subscribed and self.followed_until > self._clock()

    def overdue(self) -> bool:
        """Heartbeats were heard once but not lately: Redis is stalled, or this process too
        busy to tell."""
        return 0 < self.followed_until <= self._clock()

    async def follow_forever(self) -> None:
        await follow_channel(
            self.redis,
            self.channel,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            logger=self.logger,
            event="product_cache",
        )

    def worth_waiting(self) -> bool:
        """Heartbeats are overdue because this process is behind, as far as it can tell: a read
        may wait for ``next_heard`` rather than load. Not once such a wait has timed out, until
        a heartbeat comes back (Redis is stalled as well, and every read would wait it out)."""
        return self.behind and not self._waited_in_vain and self.overdue()

    def waited_in_vain(self) -> None:
        self._waited_in_vain = True

    def next_heard(self) -> asyncio.Future[None]:
        """Done when the next heartbeat of ours comes back (``followed_until`` moved on), or the
        subscription comes up or goes down. Shared by every waiter: shield it before a wait
        that may be cancelled."""
        if self._next_heard is None or self._next_heard.done():
            self._next_heard = asyncio.get_running_loop().create_future()
        return self._next_heard

    def _wake_waiters(self) -> None:
        if self._next_heard is not None and not self._next_heard.done():
            self._next_heard.set_result(None)
        self._next_heard = None

    async def heartbeat(self) -> None:
        """One heartbeat; called every ``HEARTBEAT`` seconds after the last one returned."""
        start = self._clock()
        self.behind = 0 < self._due <= start - _BEHIND
        try:
            await self._beat()
        finally:
            self._due = self._clock() + HEARTBEAT

    async def _beat(self) -> None:
        client = self.redis.client
        if client is None or not self.subscribed:
            return
        self._beats += 1
        number, subscription = self._beats, self._subscriptions
        message = f"{self._beat_prefix}{number} {self._clock()!r}"
        try:
            async with asyncio.timeout(self.redis.timeout):
                await publish(client, self.channel, message)
        except Exception:
            # Not logged: the heartbeat that does not come back is the signal, and reads and
            # writes report a failing Redis themselves. Redis not answering in time is an
            # outage for the writers of the moment too: their invalidations may be pending.
            self._doubt = True
            return
        if subscription != self._subscriptions or number <= self._heard_last:
            return  # the subscription changed meanwhile (a gap already), or it came back
        if len(self._awaited) >= _MAX_AWAITED:
            self._awaited.clear()
            self._doubt = True
        self._awaited.add(number)

    def _on_subscribed(self, subscribed: bool) -> None:
        self.subscribed = subscribed
        self.followed_until = 0.0
        self._subscriptions += 1
        self._awaited.clear()
        self._doubt = False
        # Up: messages sent while we were away are lost. Down: copies kept for followed_ttl
        # would outlive the local_ttl bound that holds from now on.
        self._on_gap()
        self._wake_waiters()  # nothing to wait for: every copy is gone

    def _heard(self, number: int, sent: float) -> None:
        """Heartbeat ``number``, sent at ``sent``, came back. Late is no gap (see above)."""
        gap, self._doubt = self._doubt, False
        awaited = self._awaited
        if awaited:
            passed = [taken for taken in awaited if taken <= number]
            for taken in passed:
                awaited.discard(taken)
                gap = gap or taken < number  # taken by Redis, overtaken: lost on the way
        self._heard_last = max(self._heard_last, number)
        if gap:
            self._on_gap()  # what was published alongside may never arrive
        self.followed_until = max(self.followed_until, sent + _HEARD_WITHIN)
        self._waited_in_vain = False
        self._wake_waiters()

    def _on_message(self, data: object) -> None:
        if isinstance(data, str) and data.startswith(_BEAT):
            if data.startswith(self._beat_prefix):
                number, _, sent = data[len(self._beat_prefix) :].partition(" ")
                self._heard(int(number), float(sent))
            return  # another process' heartbeat
        try:
            product_id = int(str(data))
        except (TypeError, ValueError):
            self.logger.warning("product_cache_message_invalid")
            return
        self._on_invalidated(product_id)
