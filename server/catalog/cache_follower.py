"""Following the product cache's invalidation channel, and knowing that it is followed.

A stalled Redis (paused, or a partition that sends no RST) leaves the subscription looking up
for seconds, until a keepalive fails. So each process publishes a heartbeat on the channel every
``HEARTBEAT`` seconds and trusts its long-lived copies only while one it sent at most
``_HEARD_WITHIN`` ago has come back: an invalidation published before that heartbeat has been
delivered before it. When heartbeats return after a gap, or the subscription comes up or goes
down, ``on_gap`` is called: invalidations sent meanwhile may never arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from server.runtime.pubsub import follow_channel, publish
from server.runtime.redis_link import RedisLink

HEARTBEAT = 0.2
_HEARD_WITHIN = 0.5
_BEAT = "~"  # heartbeats start with it; an invalidation is a bare product id


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
        # A failure is not logged: the heartbeat that does not come back is the signal, and
        # reads and writes report a failing Redis themselves.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.redis.timeout):
                await publish(client, self.channel, f"{self._beat_prefix}{self._clock()!r}")

    def _on_subscribed(self, subscribed: bool) -> None:
        self.subscribed = subscribed
        self.followed_until = 0.0
        # Up: messages sent while we were away are lost. Down: copies kept for followed_ttl
        # would outlive the local_ttl bound that holds from now on.
        self._on_gap()

    def _heard(self, sent: float) -> None:
        if self.overdue():
            # Back after a gap: what was published during it may never arrive.
            self._on_gap()
        self.followed_until = max(self.followed_until, sent + _HEARD_WITHIN)

    def _on_message(self, data: object) -> None:
        if isinstance(data, str) and data.startswith(_BEAT):
            if data.startswith(self._beat_prefix):
                self._heard(float(data[len(self._beat_prefix) :]))
            return  # another process' heartbeat
        try:
            product_id = int(str(data))
        except (TypeError, ValueError):
            self.logger.warning("product_cache_message_invalid")
            return
        self._on_invalidated(product_id)
