"""The product read cache: an in-process dict, then Redis, then PostgreSQL.

A warm read is a dict lookup and a counter, no I/O. A cold key is loaded once per process however
many requests wait for it. Writers call ``invalidate`` (``invalidate_many`` for several products
of one write) once committed: it drops the local copy, leaves a versioned tombstone in Redis and
publishes the id, so every replica drops its copy at once (``cache_redis.py``). While this
process follows those invalidations (``cache_follower.py``: the subscription and its heartbeat)
a local copy lives ``followed_ttl``; when it does not (no Redis, or the subscription is down)
the short ``local_ttl`` alone bounds staleness, and losing the subscription drops every local
copy. ``followed_ttl=0`` turns the cache off: every read loads.

Copies stored while no heartbeat vouches live ``local_ttl``; while heartbeats are overdue only
copies younger than ``local_ttl`` are served and reads skip Redis (they would wait out its
timeout), so a stalled Redis costs at most ``max(_HEARD_WITHIN, local_ttl)`` of staleness. When
invalidations may have been lost (the subscription broke, a heartbeat of ours went missing or
was not taken in time: ``cache_follower.py``) every local copy is dropped. Heartbeats that come
back late but in order on the same subscription (this process busy) drop nothing: every
invalidation published before them has been delivered before them.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import islice

from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.catalog.cache_follower import HEARTBEAT, InvalidationFollower
from server.catalog.cache_metrics import ProductCacheMetrics
from server.catalog.cache_redis import REDIS_PAUSE, SharedProducts
from server.catalog.cached_product import CachedProduct, Loader
from server.runtime import background
from server.runtime.redis_link import RedisLink

__all__ = ["CachedProduct", "Loader", "ProductCache"]

_Entry = tuple[float, float, CachedProduct | None, float, "asyncio.Future[CachedProduct | None]"]

# A followed copy's next one is loaded from this share of followed_ttl on, spread over the next
# _REFRESH_SPREAD of it (see _store).
_REFRESH_FROM = 0.75
_REFRESH_SPREAD = 0.15


class ProductCache:
    """Products by id. ``registry`` gets the hit/miss counters (``cache_metrics.py``)."""

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
        self.channel = channel or f"{namespace}:product-invalidations"
        self.max_entries = max_entries
        self._clock = clock
        # id -> (expiry while followed, expiry otherwise, the product or None for "not found",
        # when a hit starts loading its next copy: see _store, a done future holding the
        # product: what a hit answers)
        self._local: dict[int, _Entry] = {}
        self._flights: dict[int, asyncio.Task[CachedProduct | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.follower = InvalidationFollower(
            redis,
            logger,
            channel=self.channel,
            clock=clock,
            on_invalidated=self._drop,
            on_gap=self._drop_all,
        )
        self.shared = SharedProducts(
            redis,
            logger,
            namespace=namespace,
            channel=self.channel,
            ttl_ms=int(redis_ttl * 1000),
            clock=clock,
            reads_paused=self.follower.overdue,
        )
        self.local_hits = self.redis_hits = self.misses = self.coalesced = 0
        self.metrics = ProductCacheMetrics(
            self.counts, registry=registry, multiprocess=multiprocess
        )

    def get(
        self, product_id: int, load: Loader, replica_load: Loader | None = None
    ) -> Awaitable[CachedProduct | None]:
        """``load`` reads the primary; ``replica_load``, when given, a read replica, which a
        miss uses only when Redis vouches for the newest version (see ``_load``).

        A local hit is answered with its entry's done future: awaiting it suspends nothing,
        and no coroutine is made for the hit (its object and frame were about a third of what
        a hit cost)."""
        if not self.enabled:
            self.misses += 1
            return load()  # not wrapped in a coroutine of our own: a frame fewer per read
        entry = self._local.get(product_id)
        if entry is not None:
            now = self._clock()
            if entry[1] > now:
                self.local_hits += 1
                return entry[4]
            if entry[0] > now and self.follower.followed_until > now:
                self.local_hits += 1
                if entry[3] <= now and product_id not in self._flights:
                    self._refresh(product_id, load, replica_load)
                return entry[4]
        return self._get(product_id, load, replica_load)

    async def _get(
        self, product_id: int, load: Loader, replica_load: Loader | None = None
    ) -> CachedProduct | None:
        # Not held locally, or no longer served (get checked): one load, however many wait.
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
        await self.shared.invalidate(written)
        for product_id, _ in written:
            self._drop(product_id)  # a read that raced the tombstone may have stored the old row

    async def start(self) -> None:
        if self.redis.configured:
            follow = asyncio.create_task(self.follower.follow_forever(), name="product-sub")
            self._tasks.append(follow)
            retry = background.repeat_async(
                REDIS_PAUSE, self.shared.send_pending, name="product-tombstones", logger=self.logger
            )
            self._tasks.append(retry)
            beat = background.repeat_async(
                HEARTBEAT, self.follower.heartbeat, name="product-heartbeat", logger=self.logger
            )
            self._tasks.append(beat)

    async def stop(self) -> None:
        for task in self._tasks:
            await background.stop(task)
        self._tasks.clear()

    @property
    def following(self) -> bool:
        """Whether invalidations are known to arrive (a recent heartbeat came back)."""
        return self.follower.following

    @property
    def subscribed(self) -> bool:
        return self.follower.subscribed

    @property
    def followed_until(self) -> float:
        """When the last heartbeat heard back stops vouching; 0 until one comes back."""
        return self.follower.followed_until

    def counts(self) -> tuple[int, int, int, int]:
        """local_hit, redis_hit, miss, coalesced."""
        return self.local_hits, self.redis_hits, self.misses, self.coalesced

    def flush(self) -> None:
        """Multiprocess mode: push what was counted since the last flush into the shared files."""
        self.metrics.flush()

    def _refresh(self, product_id: int, load: Loader, replica_load: Loader | None) -> None:
        """The next copy of a followed one near its expiry, loaded while this one is served:
        a product in steady demand never has a read wait for it (see _store)."""
        flight = background.spawn_detached(self._fill(product_id, load, replica_load, False))
        self._flights[product_id] = flight
        flight.add_done_callback(lambda done: self._landed(product_id, done))

    def _landed(self, product_id: int, flight: asyncio.Task[CachedProduct | None]) -> None:
        if self._flights.get(product_id) is flight:
            del self._flights[product_id]
        if not flight.cancelled():
            flight.exception()  # the waiters got it; don't warn when all of them had gone

    def _drop(self, product_id: int) -> None:
        self._local.pop(product_id, None)
        # Callers from now on start a fresh load; the one in flight may hold the old row.
        self._flights.pop(product_id, None)

    def _drop_all(self) -> None:
        self._local.clear()
        self._flights.clear()  # a load that started on the other side of the change stores nothing

    def _store(self, product_id: int, product: CachedProduct | None) -> None:
        local = self._local
        if product_id in local:
            del local[product_id]  # re-inserted at the end: the dict stays in expiry order
        elif len(local) >= self.max_entries:
            for oldest in list(islice(local, max(1, self.max_entries // 100))):
                del local[oldest]
        # "Not found" stays brief: random-id scans must not fill the dict for long.
        now = self._clock()
        followed = product is not None and self.follower.followed_until > now
        # A followed copy's next one is loaded by the first hit after a random 75-90% of
        # followed_ttl (_refresh), and it is served meanwhile. Before, every copy lapsed and
        # the read after it waited for Redis; copies stored together (a warm-up, a wave of
        # misses) lapsed together, 30 s later, as a wave of such reads.
        refresh = now + self.followed_ttl * (_REFRESH_FROM + _REFRESH_SPREAD * random.random())
        ready: asyncio.Future[CachedProduct | None] = asyncio.get_running_loop().create_future()
        ready.set_result(product)
        local[product_id] = (
            now + (self.followed_ttl if followed else self.local_ttl),
            now + self.local_ttl,
            product,
            refresh if followed else math.inf,
            ready,
        )

    async def _fill(
        self,
        product_id: int,
        load: Loader,
        replica_load: Loader | None = None,
        counted: bool = True,  # False: a refresh (_refresh), no read's hit or miss
    ) -> CachedProduct | None:
        product, newest = await self.shared.read(product_id)
        if product is not None:
            self.redis_hits += counted
        else:
            self.misses += counted
            product = await self._load(load, replica_load, newest)
            if product is not None:
                await self.shared.store(product_id, product)
        # Not when invalidated meanwhile; and a refresh that lands while heartbeats are overdue
        # leaves the copy it was to replace: stored now, the new one would live local_ttl
        # only, where the old keeps its followed expiry (a busy worker then turned its
        # refreshes into misses).
        if self._flights.get(product_id) is asyncio.current_task() and (
            counted or self.follower.followed_until > self._clock()
        ):
            self._store(product_id, product)
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
