"""The product cache's Redis layer, shared by every process: stored products, writers'
tombstones and their invalidations.

Every write leaves its version in Redis (the tombstone) and publishes the product id: one
script call for all the products of a write on one Redis server, sent on the link's own
command connection (server/runtime/resp_commands.py, an eighth of coredis' client cost a call:
decision 0015); on a cluster two per product through coredis (a script there touches one slot,
and the fan-out is SPUBLISH).
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
from structlog.typing import FilteringBoundLogger

from server.catalog.cached_product import CachedProduct, decode, encode, stored_version
from server.runtime.pubsub import error_name, publish
from server.runtime.redis_client import RedisClient
from server.runtime.redis_link import RedisLink
from server.runtime.redis_script import RedisScript
from server.runtime.resp_commands import RespCommands

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
# A write's tombstones and their invalidations in one round trip (one Redis server; on a
# cluster a script touches one slot and the fan-out is SPUBLISH, calls of their own): for each
# key, SET-IF-NEWER of its version, then its product id published on the channel. ARGV: the
# TTL in ms, the channel, then each key's version and product id.
# Sent with EVAL, not EVALSHA: a Redis that lost its scripts (restarted, flushed) and stalls
# would answer NOSCRIPT after the caller gave up, and the tombstones would wait for the retry
# loop while readers put the old rows back; whole, they land as soon as Redis reads them, ahead
# of anything this process sends later.
_TOMBSTONES = """
for i, key in ipairs(KEYS) do
  local version = ARGV[2 * i + 1]
  local current = redis.call('GET', key)
  local stored = current and tonumber(string.match(current, '^%d+'))
  if not (stored and stored > tonumber(version)) then
    redis.call('SET', key, version, 'PX', ARGV[1])
  end
  redis.call('PUBLISH', ARGV[2], ARGV[2 * i + 2])
end
return #KEYS
"""
_EVAL = (b"EVAL", _TOMBSTONES.encode())
REDIS_PAUSE = 1.0  # after a Redis failure, reads skip it this long instead of paying a timeout
_MAX_PENDING = 10_000
# A script blocks Redis while it runs: a backlog of pending tombstones goes in calls this big.
_TOMBSTONES_PER_CALL = 100


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
        self._set_if_newer = RedisScript(_SET_IF_NEWER)
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
                    await self._set_if_newer.run(client, [self._key(product_id)], args)
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
        try:
            if isinstance(client, coredis.RedisCluster):
                for product_id in product_ids:
                    await self._send_on_cluster(client, product_id)
            else:
                commands = self.redis.commands
                if commands is None:
                    raise ConnectionError("the command connection is closed")
                for start in range(0, len(product_ids), _TOMBSTONES_PER_CALL):
                    await self._send(commands, product_ids[start : start + _TOMBSTONES_PER_CALL])
            self._ok()
        except Exception as exc:
            self._failed("invalidate", exc)

    async def _send(self, commands: RespCommands, product_ids: list[int]) -> None:
        pending = self._pending
        # Those a concurrent send delivered meanwhile are no longer pending.
        sent = {pid: pending[pid] for pid in product_ids if pid in pending}
        if not sent:
            return
        arguments: list[str | bytes] = [*_EVAL, str(len(sent))]
        arguments += [self._key(pid) for pid in sent]
        arguments += [str(self.ttl_ms), self.channel]
        for product_id, version in sent.items():
            arguments += (str(version), str(product_id))
        async with asyncio.timeout(self.redis.timeout):
            await commands.execute(*arguments)
        self._delivered(sent)

    async def _send_on_cluster(self, client: RedisClient, product_id: int) -> None:
        version = self._pending.get(product_id)
        if version is None:
            return  # a concurrent send delivered it meanwhile
        async with asyncio.timeout(self.redis.timeout):
            args = (version, version, self.ttl_ms)
            await self._set_if_newer.run(client, [self._key(product_id)], args)
            await publish(client, self.channel, str(product_id))
        self._delivered({product_id: version})

    def _delivered(self, sent: dict[int, int]) -> None:
        for product_id, version in sent.items():
            if self._pending.get(product_id) == version:  # not written again meanwhile
                del self._pending[product_id]

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
