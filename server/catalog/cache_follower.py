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

    async def heartbeat(self) -> None:
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
