"""The product cache's Redis layer, shared by every process: stored products, writers'
tombstones and their invalidations.

Every write leaves its version in Redis (the tombstone) and publishes the product id: one
script call per product on one Redis server (two on a cluster, whose fan-out is SPUBLISH).
Stores go through SET-IF-NEWER, so a reader that loaded a row before a write can never put it
back over the newer state. A tombstone Redis has not taken yet stays pending and is resent every
``REDIS_PAUSE`` seconds; until then that product is not read from Redis. After a Redis failure
reads and writes skip it for ``REDIS_PAUSE`` instead of paying a timeout each, and reads skip it
while heartbeats are overdue (``cache_follower.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import coredis
from coredis.commands.script import Script
from structlog.typing import FilteringBoundLogger

from server.catalog.cached_product import CachedProduct, decode, encode, stored_version
from server.runtime.pubsub import error_name, publish
from server.runtime.redis_client import RedisClient
from server.runtime.redis_link import RedisLink

# Stored versions only move forward; an equal version may replace (a row over its own tombstone).
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^%d+'))
  if stored and stored > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# A writer's tombstone and its invalidation in one round trip (one Redis server; on a cluster
# the fan-out is SPUBLISH, a call of its own): SET-IF-NEWER of the version, then the product
# id published on the channel. ARGV: the version, the TTL in ms, the channel, the product id.
# Sent with EVAL, not EVALSHA: a Redis that lost its scripts (restarted, flushed) and stalls
# would answer NOSCRIPT after the caller gave up, and the tombstone would wait for the retry
# loop while readers put the old row back; whole, it lands as soon as Redis reads it, ahead of
# anything this process sends later.
_TOMBSTONE = """
local current = redis.call('GET', KEYS[1])
local stored = current and tonumber(string.match(current, '^%d+'))
if not (stored and stored > tonumber(ARGV[1])) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""
REDIS_PAUSE = 1.0  # after a Redis failure, reads skip it this long instead of paying a timeout
_MAX_PENDING = 10_000


class SharedProducts:
    """Products and tombstones under ``{namespace}:product:{id}``; never raises for Redis.
    ``reads_paused`` says when reads should not wait on Redis (heartbeats overdue)."""

    def __init__(
        self,
        redis: RedisLink,
        logger: FilteringBoundLogger,
        *,
        namespace: str,
        channel: str,
        ttl_ms: int,
        clock: Callable[[], float],
        reads_paused: Callable[[], bool],
    ) -> None:
        self.redis = redis
        self.logger = logger
        self.namespace = namespace
        self.channel = channel
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._reads_paused = reads_paused
        self._pending: dict[int, int] = {}  # tombstones Redis has not taken yet: id -> version
        self._script = Script[str](script=_SET_IF_NEWER)
        self._down = False
        self._paused_until = 0.0

    async def read(self, product_id: int) -> tuple[CachedProduct | None, int | None]:
        """The stored product (None for none or a tombstone) and the version Redis vouches is
        newest (0: none written lately; None: Redis did not answer, or a tombstone of ours is
        still pending)."""
        if product_id in self._pending:
            await self.send_tombstones([product_id])
        if product_id not in self._pending and (client := self._read_client()) is not None:
            try:
                async with asyncio.timeout(self.redis.timeout):
                    raw = await client.get(self._key(product_id))
                product = None if raw is None else decode(raw)
                newest = 0 if raw is None else stored_version(raw)
                self._ok()
                return product, newest
            except Exception as exc:
                self._failed("get", exc)
        return None, None

    async def store(self, product_id: int, product: CachedProduct) -> None:
        """SET-IF-NEWER: a row loaded before a write never lands over its tombstone."""
        if (client := self._read_client()) is not None:
            args = (product.version, encode(product), self.ttl_ms)
            try:
                async with asyncio.timeout(self.redis.timeout):
                    await self._script([self._key(product_id)], args, client)
                self._ok()
            except Exception as exc:
                self._failed("set", exc)

    async def invalidate(self, written: Sequence[tuple[int, int]]) -> None:
        """Tombstones for each (product id, version) one write committed, published."""
        if not self.redis.configured:
            return
        pending = self._pending
        for product_id, version in written:
            if len(pending) >= _MAX_PENDING and product_id not in pending:
                pending.pop(next(iter(pending)))  # the Redis TTL bounds that one
            pending[product_id] = max(version, pending.get(product_id, version))
        await self.send_tombstones([product_id for product_id, _ in written])

    async def send_pending(self) -> None:
        await self.send_tombstones(list(self._pending))

    async def send_tombstones(self, product_ids: list[int]) -> None:
        client = self._client()
        if client is None or not product_ids:
            return
        cluster = isinstance(client, coredis.RedisCluster)
        try:
            for product_id in product_ids:
                version = self._pending.get(product_id)
                if version is None:
                    continue  # a concurrent send delivered it meanwhile
                key = self._key(product_id)
                async with asyncio.timeout(self.redis.timeout):
                    if cluster:
                        await self._script([key], [version, version, self.ttl_ms], client)
                        await publish(client, self.channel, str(product_id))
                    else:
                        await client.eval(
                            _TOMBSTONE,
                            keys=[key],
                            args=[version, self.ttl_ms, self.channel, product_id],
                        )
                if self._pending.get(product_id) == version:
                    del self._pending[product_id]
            self._ok()
        except Exception as exc:
            self._failed("invalidate", exc)

    def _key(self, product_id: int) -> str:
        return f"{self.namespace}:product:{product_id}"

    def _client(self) -> RedisClient | None:
        if self._paused_until and self._clock() < self._paused_until:
            return None
        return self.redis.client

    def _read_client(self) -> RedisClient | None:
        # Heartbeats overdue: Redis is stalled, or this process too busy to tell; either way
        # PostgreSQL answers sooner than a Redis timeout. Writes still try (and pause on failure).
        if self._reads_paused():
            return None
        return self._client()

    def _ok(self) -> None:
        if self._down:
            self._down = False
            self._paused_until = 0.0
            self.logger.info("product_cache_redis_recovered")

    def _failed(self, operation: str, exc: Exception) -> None:
        self._paused_until = self._clock() + REDIS_PAUSE
        if not self._down:
            self._down = True
            self.logger.warning(
                "product_cache_redis_failed",
                operation=operation,
                error=error_name(exc),
                detail="reads go to PostgreSQL; the local TTL bounds staleness",
            )
