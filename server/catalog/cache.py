"""The product read cache: an in-process dict, then Redis, then PostgreSQL.

A warm read is a dict lookup and a counter, no I/O. A cold key is loaded once per process however
many requests wait for it. Writers call ``invalidate`` (``invalidate_many`` for several products
of one write) once committed: it drops the local copy, leaves a versioned tombstone in Redis and
publishes the id, so every replica drops its copy at once: one script call per product on one
Redis server (two on a cluster, whose fan-out is SPUBLISH). While this process follows those
invalidations a local copy lives ``followed_ttl``; when it does not (no Redis, or the
subscription is down) the short ``local_ttl`` alone bounds staleness, and losing the
subscription drops every local copy. ``followed_ttl=0`` turns the cache off: every read loads.
Redis writes go through SET-IF-NEWER, so a reader that loaded a row before a write can never put
it back over the newer state.

A stalled Redis (paused, or a partition that sends no RST) leaves the subscription looking up
for seconds, until a keepalive fails. So each process publishes a heartbeat on the channel every
``_HEARTBEAT`` seconds and trusts its long-lived copies only while one it sent at most
``_HEARD_WITHIN`` ago has come back: an invalidation published before that heartbeat has been
delivered before it. Copies stored without that voucher live ``local_ttl``; past it, only copies
younger than ``local_ttl`` are served and reads skip Redis (they would wait out its timeout), so
a stall costs at most ``max(_HEARD_WITHIN, local_ttl)`` of staleness. When heartbeats return
after a gap every local copy is dropped: invalidations sent during it may never arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import coredis
from coredis.commands.script import Script
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from structlog.typing import FilteringBoundLogger

from server.runtime import background
from server.runtime.metrics import multiprocess_mode
from server.runtime.pubsub import error_name, follow_channel, publish
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
_REQUESTS = "hotpath_cache_requests"
_REQUESTS_HELP = "Cache lookups by the layer that answered (miss: loaded from PostgreSQL)."
_COALESCED = "hotpath_cache_coalesced"
_COALESCED_HELP = "Cache lookups that waited for a load already in flight."
_RESULTS = ("local_hit", "redis_hit", "miss")
_REDIS_PAUSE = 1.0  # after a Redis failure, reads skip it this long instead of paying a timeout
_HEARTBEAT = 0.2
_HEARD_WITHIN = 0.5
_BEAT = "~"  # heartbeats start with it; an invalidation is a bare product id
_MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class CachedProduct:
    version: int
    etag: str
    body: bytes  # the JSON the handler sends as is


Loader = Callable[[], Awaitable[CachedProduct | None]]


def _encode(product: CachedProduct) -> str:
    return f"{product.version}\n{product.etag}\n{product.body.decode()}"


def _decode(raw: str) -> CachedProduct | None:
    """None for a tombstone (a bare version)."""
    version, sep, rest = raw.partition("\n")
    if not sep:
        return None
    etag, _, body = rest.partition("\n")
    return CachedProduct(int(version), etag, body.encode())


class ProductCache(Collector):
    """Products by id. ``registry`` gets the hit/miss counters as a collector; under prometheus
    multiprocess mode ``flush()`` writes them to the shared files instead, as HttpMetrics does."""

    def __init__(
        self,
        redis: RedisLink,
        logger: FilteringBoundLogger,
        *,
        namespace: str,
        local_ttl: float = 0.5,
        followed_ttl: float = 30.0,
        redis_ttl: float = 300.0,
        channel: str | None = None,
        registry: CollectorRegistry | None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
        multiprocess: bool | None = None,
    ) -> None:
        if min(local_ttl, redis_ttl) <= 0 or followed_ttl < 0 or max_entries < 1:
            raise ValueError("TTLs must be positive (followed_ttl 0: off), max_entries at least 1")
        self.enabled = followed_ttl > 0
        self.redis = redis
        self.logger = logger
        self.namespace = namespace
        self.local_ttl = local_ttl
        self.followed_ttl = max(followed_ttl, local_ttl)
        self.redis_ttl_ms = int(redis_ttl * 1000)
        self.channel = channel or f"{namespace}:product-invalidations"
        self.max_entries = max_entries
        self._clock = clock
        # id -> (expiry while followed, expiry otherwise, the product or None for "not found")
        self._local: dict[int, tuple[float, float, CachedProduct | None]] = {}
        self._flights: dict[int, asyncio.Task[CachedProduct | None]] = {}
        self._pending: dict[int, int] = {}  # tombstones Redis has not taken yet: id -> version
        self._script = Script[str](script=_SET_IF_NEWER)
        self._redis_down = False
        self._redis_paused_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = False
        self._beat_prefix = f"{_BEAT}{secrets.token_hex(8)} "
        # When the last heartbeat heard back stops vouching; 0 until one comes back.
        self.followed_until = 0.0
        self.local_hits = self.redis_hits = self.misses = self.coalesced = 0
        self._flushed = [0, 0, 0, 0]
        if multiprocess is None:
            multiprocess = multiprocess_mode()
        self.multiprocess = multiprocess
        if multiprocess:
            self._requests = Counter(_REQUESTS, _REQUESTS_HELP, ("cache", "result"), registry=None)
            coalesced = Counter(_COALESCED, _COALESCED_HELP, ("cache",), registry=None)
            self._children = [self._requests.labels("product", result) for result in _RESULTS]
            self._children.append(coalesced.labels("product"))
        elif registry is not None:
            registry.register(self)

    def get(
        self, product_id: int, load: Loader, replica_load: Loader | None = None
    ) -> Awaitable[CachedProduct | None]:
        """``load`` reads the primary; ``replica_load``, when given, a read replica, which a
        miss uses only when Redis vouches for the newest version (see ``_load``)."""
        if not self.enabled:
            self.misses += 1
            return load()  # not wrapped in a coroutine of our own: a frame fewer per read
        return self._get(product_id, load, replica_load)

    async def _get(
        self, product_id: int, load: Loader, replica_load: Loader | None = None
    ) -> CachedProduct | None:
        entry = self._local.get(product_id)
        if entry is not None:
            now = self._clock()
            if entry[1] > now or (entry[0] > now and self.followed_until > now):
                self.local_hits += 1
                return entry[2]
        flight = self._flights.get(product_id)
        if flight is None:
            # Detached: one caller's deadline must not fail the others waiting on this load.
            flight = background.spawn_detached(self._fill(product_id, load, replica_load))
            self._flights[product_id] = flight
            flight.add_done_callback(lambda done: self._landed(product_id, done))
        else:
            self.coalesced += 1
        # Shielded: a caller that goes away must not cancel the load the others wait for.
        return await asyncio.shield(flight)

    async def invalidate(self, product_id: int, version: int) -> None:
        """Call once the write (of ``version``) committed; never raises for Redis."""
        await self.invalidate_many(((product_id, version),))

    async def invalidate_many(self, written: Sequence[tuple[int, int]]) -> None:
        """``invalidate`` for each (product id, version) one write committed (an order's
        products); never raises for Redis."""
        for product_id, _ in written:
            self._drop(product_id)
        if self.redis.configured:
            pending = self._pending
            for product_id, version in written:
                if len(pending) >= _MAX_PENDING and product_id not in pending:
                    pending.pop(next(iter(pending)))  # redis_ttl bounds that one
                pending[product_id] = max(version, pending.get(product_id, version))
            await self._send_tombstones([product_id for product_id, _ in written])
        for product_id, _ in written:
            self._drop(product_id)  # a read that raced the tombstone may have stored the old row

    async def start(self) -> None:
        if self.redis.configured:
            self._tasks.append(asyncio.create_task(self._subscribe_forever(), name="product-sub"))
            retry = background.repeat_async(
                _REDIS_PAUSE,
                lambda: self._send_tombstones(list(self._pending)),
                name="product-tombstones",
                logger=self.logger,
            )
            self._tasks.append(retry)
            beat = background.repeat_async(
                _HEARTBEAT, self._heartbeat, name="product-heartbeat", logger=self.logger
            )
            self._tasks.append(beat)

    @property
    def following(self) -> bool:
        """Whether invalidations are known to arrive (a recent heartbeat came back)."""
        return self.subscribed and self.followed_until > self._clock()

    async def stop(self) -> None:
        for task in self._tasks:
            await background.stop(task)
        self._tasks.clear()

    def _landed(self, product_id: int, flight: asyncio.Task[CachedProduct | None]) -> None:
        if self._flights.get(product_id) is flight:
            del self._flights[product_id]
        if not flight.cancelled():
            flight.exception()  # the waiters got it; don't warn when all of them had gone

    def _drop(self, product_id: int) -> None:
        self._local.pop(product_id, None)
        # Callers from now on start a fresh load; the one in flight may hold the old row.
        self._flights.pop(product_id, None)

    def _store(self, product_id: int, product: CachedProduct | None) -> None:
        local = self._local
        if product_id in local:
            del local[product_id]  # re-inserted at the end: the dict stays in expiry order
        elif len(local) >= self.max_entries:
            for oldest in list(islice(local, max(1, self.max_entries // 100))):
                del local[oldest]
        # "Not found" stays brief: random-id scans must not fill the dict for long.
        now = self._clock()
        followed = product is not None and self.followed_until > now
        local[product_id] = (
            now + (self.followed_ttl if followed else self.local_ttl),
            now + self.local_ttl,
            product,
        )

    async def _fill(
        self, product_id: int, load: Loader, replica_load: Loader | None = None
    ) -> CachedProduct | None:
        key = f"{self.namespace}:product:{product_id}"
        product = None
        newest: int | None = None  # the version Redis vouches is newest (0: none written lately)
        if product_id in self._pending:
            await self._send_tombstones([product_id])
        if product_id not in self._pending and (client := self._read_client()) is not None:
            try:
                async with asyncio.timeout(self.redis.timeout):
                    raw = await client.get(key)
                product = None if raw is None else _decode(raw)
                newest = 0 if raw is None else int(raw.partition("\n")[0])
                self._redis_ok()
            except Exception as exc:
                self._redis_failed("get", exc)
        if product is not None:
            self.redis_hits += 1
        else:
            self.misses += 1
            product = await self._load(load, replica_load, newest)
            if product is not None and (client := self._read_client()) is not None:
                args = (product.version, _encode(product), self.redis_ttl_ms)
                try:
                    async with asyncio.timeout(self.redis.timeout):
                        await self._script([key], args, client)
                    self._redis_ok()
                except Exception as exc:
                    self._redis_failed("set", exc)
        if self._flights.get(product_id) is asyncio.current_task():
            self._store(product_id, product)  # not when invalidated meanwhile
        return product

    async def _load(
        self, load: Loader, replica_load: Loader | None, newest: int | None
    ) -> CachedProduct | None:
        """A read replica's row when it is at least the version Redis vouches for: every write
        leaves its version there (the tombstone) for ``redis_ttl``, longer than a replica in
        rotation may lag, so no key means no write the replica can lack. Otherwise (Redis did
        not answer, a write of ours not yet recorded there, the replica behind or without the
        row) the primary's."""
        if replica_load is not None and newest is not None:
            product = await replica_load()
            if product is not None and product.version >= newest:
                return product
        return await load()

    async def _send_tombstones(self, product_ids: list[int]) -> None:
        client = self._client()
        if client is None or not product_ids:
            return
        cluster = isinstance(client, coredis.RedisCluster)
        try:
            for product_id in product_ids:
                version = self._pending.get(product_id)
                if version is None:
                    continue  # a concurrent send delivered it meanwhile
                key = f"{self.namespace}:product:{product_id}"
                async with asyncio.timeout(self.redis.timeout):
                    if cluster:
                        await self._script([key], [version, version, self.redis_ttl_ms], client)
                        await publish(client, self.channel, str(product_id))
                    else:
                        await client.eval(
                            _TOMBSTONE,
                            keys=[key],
                            args=[version, self.redis_ttl_ms, self.channel, product_id],
                        )
                if self._pending.get(product_id) == version:
                    del self._pending[product_id]
            self._redis_ok()
        except Exception as exc:
            self._redis_failed("invalidate", exc)

    def _client(self) -> RedisClient | None:
        if self._redis_paused_until and self._clock() < self._redis_paused_until:
            return None
        return self.redis.client

    def _read_client(self) -> RedisClient | None:
        # Heartbeats overdue: Redis is stalled, or this process too busy to tell; either way
        # PostgreSQL answers sooner than a Redis timeout. Writes still try (and pause on failure).
        if 0 < self.followed_until <= self._clock():
            return None
        return self._client()

    def _redis_ok(self) -> None:
        if self._redis_down:
            self._redis_down = False
            self._redis_paused_until = 0.0
            self.logger.info("product_cache_redis_recovered")

    def _redis_failed(self, operation: str, exc: Exception) -> None:
        self._redis_paused_until = self._clock() + _REDIS_PAUSE
        if not self._redis_down:
            self._redis_down = True
            self.logger.warning(
                "product_cache_redis_failed",
                operation=operation,
                error=error_name(exc),
                detail="reads go to PostgreSQL; the local TTL bounds staleness",
            )

    async def _subscribe_forever(self) -> None:
        await follow_channel(
            self.redis,
            self.channel,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            logger=self.logger,
            event="product_cache",
        )

    def _on_subscribed(self, subscribed: bool) -> None:
        self.subscribed = subscribed
        self.followed_until = 0.0
        # Up: messages sent while we were away are lost. Down: copies kept for followed_ttl
        # would outlive the local_ttl bound that holds from now on.
        self._local.clear()
        self._flights.clear()  # a load that started on the other side of the change stores nothing

    async def _heartbeat(self) -> None:
        client = self.redis.client
        if client is None or not self.subscribed:
            return
        # A failure is not logged: the heartbeat that does not come back is the signal, and
        # reads and writes report a failing Redis themselves.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.redis.timeout):
                await publish(client, self.channel, f"{self._beat_prefix}{self._clock()!r}")

    def _heard(self, sent: float) -> None:
        if 0 < self.followed_until <= self._clock():
            # Back after a gap: what was published during it may never arrive.
            self._local.clear()
            self._flights.clear()
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
        self._drop(product_id)

    def counts(self) -> tuple[int, int, int, int]:
        """local_hit, redis_hit, miss, coalesced."""
        return self.local_hits, self.redis_hits, self.misses, self.coalesced

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(_REQUESTS, _REQUESTS_HELP, labels=("cache", "result"))
        for result, value in zip(_RESULTS, self.counts(), strict=False):
            requests.add_metric(["product", result], float(value))
        yield requests
        coalesced = CounterMetricFamily(_COALESCED, _COALESCED_HELP, labels=("cache",))
        coalesced.add_metric(["product"], float(self.coalesced))
        yield coalesced

    def flush(self) -> None:
        """Multiprocess mode: push what was counted since the last flush into the shared files."""
        if not self.multiprocess:
            return
        now = self.counts()
        for child, count, before in zip(self._children, now, self._flushed, strict=True):
            if count != before:
                child.inc(count - before)
        self._flushed = list(now)
