"""The product cache against the real Redis: each ProductCache stands for one replica process."""

from __future__ import annotations

import asyncio
import io
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import coredis
import orjson
import pytest
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.catalog.cache import CachedProduct, ProductCache
from server.runtime.redis_link import RedisLink, open_redis
from tests.fixtures.app import events
from tests.fixtures.clock import Clock
from tests.fixtures.faults import signal_redis
from tests.fixtures.shared_redis import commands, redis_namespace, shared_redis_link
from tests.fixtures.support import ThrowawayRedis, until

__all__ = ["redis_namespace", "shared_redis_link"]  # fixtures: namespace, link

PRODUCT = 42


class Source:
    """Stands in for PostgreSQL: one row whose version the test moves, and a count of loads."""

    def __init__(self, version: int = 1) -> None:
        self.version: int | None = version  # None: no such row
        self.loads = 0
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.delay = 0.0

    def row(self) -> CachedProduct | None:
        if self.version is None:
            return None
        body = orjson.dumps({"id": PRODUCT, "version": self.version, "name": "Kettle é"})
        return CachedProduct(self.version, f'"p-{PRODUCT}-{self.version}"', body)

    async def load(self) -> CachedProduct | None:
        self.loads += 1
        snapshot = self.row()  # the SELECT sees the row as it is now
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return snapshot


@asynccontextmanager
async def replica(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, **options: object
) -> AsyncIterator[ProductCache]:
    """One process' cache, following invalidations (its heartbeat heard back) when Redis is
    there."""
    cache = ProductCache(link, logger, namespace=namespace, registry=None, **options)  # type: ignore[arg-type]
    await cache.start()
    try:
        if link.client is not None:
            await until(lambda: cache.following, limit=5)
        yield cache
    finally:
        await cache.stop()


async def until_version(
    get: Callable[[], Awaitable[CachedProduct | None]], version: int, *, limit: float
) -> float:
    start = time.monotonic()
    while (found := await get()) is None or found.version != version:
        if time.monotonic() - start > limit:
            raise AssertionError(f"version {version} not served within {limit} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - start


async def stored(link: RedisLink, namespace: str) -> str | None:
    assert link.client is not None
    return await link.client.get(f"{namespace}:product:{PRODUCT}")


async def test_a_local_hit_does_no_io(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Source()
    async with replica(link, logger, namespace, local_ttl=60) as cache:
        first = await cache.get(PRODUCT, source.load)
        seen = commands(link, monkeypatch)
        for _ in range(1000):
            assert await cache.get(PRODUCT, source.load) == first
        assert seen == []
        assert source.loads == 1
        assert cache.counts() == (1000, 0, 1, 0)


async def test_a_local_hit_is_a_done_future_and_a_drop_ends_it(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    # A hit makes no coroutine: get answers the entry's done future, awaitable any number of
    # times (a task's and a gather's too). Once invalidated, get is a load again.
    source = Source()
    async with replica(link, logger, namespace, local_ttl=60) as cache:
        first = await cache.get(PRODUCT, source.load)
        hit = cache.get(PRODUCT, source.load)
        assert isinstance(hit, asyncio.Future)
        assert hit.done()
        assert await hit == first
        assert await hit == first
        assert await asyncio.ensure_future(cache.get(PRODUCT, source.load)) == first
        assert list(await asyncio.gather(cache.get(PRODUCT, source.load), hit)) == [first, first]
        source.version = 2
        await cache.invalidate(PRODUCT, 2)
        miss = cache.get(PRODUCT, source.load)
        assert asyncio.iscoroutine(miss)
        assert (await miss) == source.row()
        assert source.loads == 2
        assert cache.counts() == (3, 0, 2, 0)


async def test_a_cold_burst_loads_once(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source = Source()
    source.delay = 0.05
    async with replica(link, logger, namespace) as cache:
        results = await asyncio.gather(*(cache.get(PRODUCT, source.load) for _ in range(100)))
        assert source.loads == 1
        assert {r.version for r in results if r is not None} == {1}
        assert cache.counts() == (0, 0, 1, 99)


async def test_another_process_gets_a_redis_hit(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source, other_source = Source(), Source()
    async with replica(link, logger, namespace) as a, replica(link, logger, namespace) as b:
        loaded = await a.get(PRODUCT, source.load)
        assert await b.get(PRODUCT, other_source.load) == loaded
        assert other_source.loads == 0
        assert b.counts() == (0, 1, 0, 0)
        assert await b.get(PRODUCT, other_source.load) == loaded  # now local
        assert b.counts() == (1, 1, 0, 0)


async def test_invalidate_reaches_every_replica_within_a_second(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source = Source()
    # A long local TTL: only the pub/sub message can make b drop its copy in time.
    async with (
        replica(link, logger, namespace, local_ttl=60) as a,
        replica(link, logger, namespace, local_ttl=60) as b,
    ):
        assert (await a.get(PRODUCT, source.load)) == (await b.get(PRODUCT, source.load))
        source.version = 2  # the write commits
        start = time.monotonic()
        await a.invalidate(PRODUCT, 2)
        await until_version(lambda: b.get(PRODUCT, source.load), 2, limit=1.0)
        seconds = time.monotonic() - start
        print(f"\ninvalidate() to the other replica serving the write: {seconds * 1000:.1f} ms")
        assert seconds < 0.5
        found = await a.get(PRODUCT, source.load)  # the writer reads its own write
        assert found is not None
        assert found.version == 2
        assert found.body == source.row().body  # type: ignore[union-attr]
        raw = await stored(link, namespace)  # b's load replaced the tombstone
        assert raw is not None
        assert raw.startswith("2\n")


async def test_a_write_of_several_products_is_one_redis_call(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order's products: each tombstone set (never over a newer version) and each id
    published, in one script call for all of them, and another replica drops every copy."""
    ids = [PRODUCT, PRODUCT + 1, PRODUCT + 2]
    sources = {product_id: Source() for product_id in ids}
    client = link.client
    assert client is not None
    async with (
        replica(link, logger, namespace, local_ttl=60) as writer,
        replica(link, logger, namespace, local_ttl=60) as other,
    ):
        for product_id in ids:
            await writer.get(product_id, sources[product_id].load)
            await other.get(product_id, sources[product_id].load)
        newer = f"{namespace}:product:{ids[2]}"
        await client.set(newer, "9", px=60_000)  # a later write of the last one, recorded first
        for source in sources.values():
            source.version = 2  # the write commits
        sent: list[tuple[object, ...]] = []
        original = client.create_request

        def spy(name: bytes, *args: object, **kwargs: object) -> object:
            if not (name == b"PUBLISH" and str(args[1]).startswith("~")):  # not a heartbeat
                sent.append((name, *args))
            return original(name, *args, **kwargs)  # type: ignore[arg-type]

        # On one server the tombstones go on the link's own command connection (decision
        # 0015), not through coredis: one EVAL there, nothing through the client.
        commands = link.commands
        assert commands is not None
        ours: list[tuple[str | bytes, ...]] = []
        execute = commands.execute

        async def spy_ours(*args: str | bytes) -> object:
            ours.append(args)
            return await execute(*args)

        monkeypatch.setattr(client, "create_request", spy)
        monkeypatch.setattr(commands, "execute", spy_ours)
        await writer.invalidate_many([(product_id, 2) for product_id in ids])
        monkeypatch.undo()
        assert sent == [], sent
        assert [command[0] for command in ours] == [b"EVAL"], ours
        assert ours[0][2:6] == ("3", *(f"{namespace}:product:{pid}" for pid in ids))
        assert [await client.get(f"{namespace}:product:{pid}") for pid in ids] == ["2", "2", "9"]
        for product_id in ids:
            load = sources[product_id].load
            await until_version(lambda: other.get(product_id, load), 2, limit=1.0)  # noqa: B023
            found = await writer.get(product_id, load)  # the writer reads its own write
            assert found is not None
            assert found.version == 2


async def test_a_stale_reader_cannot_overwrite_a_newer_write(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source = Source()
    async with (
        replica(link, logger, namespace, local_ttl=60) as a,
        replica(link, logger, namespace, local_ttl=60) as writer,
    ):
        source.gate = asyncio.Event()
        late = asyncio.ensure_future(a.get(PRODUCT, source.load))
        await source.started.wait()  # a's loader has read version 1 ...
        source.version = 2
        await writer.invalidate(PRODUCT, 2)  # ... and the write commits meanwhile
        source.gate.set()
        answered = await late
        assert answered is not None
        assert answered.version == 1  # it asked before the write; that answer is fine
        assert await stored(link, namespace) == "2"  # but it did not put version 1 back
        source.gate = None
        await until_version(lambda: a.get(PRODUCT, source.load), 2, limit=1.0)
        async with replica(link, logger, namespace) as fresh:
            found = await fresh.get(PRODUCT, source.load)
            assert found is not None
            assert found.version == 2
            raw = await stored(link, namespace)
            assert raw is not None
            assert raw.startswith("2\n")


async def test_an_invalidation_during_a_local_load_is_not_undone(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source = Source()
    source.gate = asyncio.Event()
    async with replica(link, logger, namespace, local_ttl=60) as cache:
        late = asyncio.ensure_future(cache.get(PRODUCT, source.load))
        await source.started.wait()
        source.version = 2
        await cache.invalidate(PRODUCT, 2)
        source.gate.set()
        newer = await cache.get(PRODUCT, source.load)  # does not join the stale load
        assert newer is not None
        assert newer.version == 2
        assert (await late) is not None
        again = await cache.get(PRODUCT, source.load)
        assert again is not None
        assert again.version == 2
        assert source.loads == 2


async def test_without_redis_reads_work_and_the_local_ttl_bounds_staleness(
    logger: FilteringBoundLogger, namespace: str
) -> None:
    clock, source = Clock(), Source()
    async with open_redis(None, timeout=0.5, logger=logger) as link:
        a = ProductCache(link, logger, namespace=namespace, registry=None, clock=clock)
        b = ProductCache(link, logger, namespace=namespace, registry=None, clock=clock)
        await a.start()  # nothing to follow: a no-op
        await a.get(PRODUCT, source.load)
        await b.get(PRODUCT, source.load)
        source.version = 2
        await a.invalidate(PRODUCT, 2)
        assert (await a.get(PRODUCT, source.load)).version == 2  # type: ignore[union-attr]
        clock.now += 0.45
        assert (await b.get(PRODUCT, source.load)).version == 1  # type: ignore[union-attr]
        clock.now += 0.06  # the default local_ttl: 0.5 s
        assert (await b.get(PRODUCT, source.load)).version == 2  # type: ignore[union-attr]
        assert source.loads == 4
        await a.stop()


async def test_not_found_is_cached_locally_only_and_briefly(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    clock, source = Clock(), Source()
    source.version = None
    async with replica(link, logger, namespace, local_ttl=0.5, clock=clock) as cache:
        assert await cache.get(PRODUCT, source.load) is None
        assert await cache.get(PRODUCT, source.load) is None
        assert source.loads == 1
        assert await stored(link, namespace) is None
        clock.now += 0.6
        assert await cache.get(PRODUCT, source.load) is None
        assert source.loads == 2
        source.version = 1  # created: the service invalidates, dropping the "not found"
        await cache.invalidate(PRODUCT, 1)
        assert await cache.get(PRODUCT, source.load) is not None


async def test_a_redis_outage_keeps_reads_working(
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
    namespace: str,
    throwaway_redis: ThrowawayRedis,
) -> None:
    source = Source()
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(
            open_redis(throwaway_redis.url, timeout=0.5, logger=logger)
        )
        a = await stack.enter_async_context(replica(link, logger, namespace, local_ttl=0.2))
        b = await stack.enter_async_context(replica(link, logger, namespace, local_ttl=0.2))
        await a.get(PRODUCT, source.load)
        await b.get(PRODUCT, source.load)
        assert b.counts() == (0, 1, 0, 0)

        throwaway_redis.kill()
        source.version = 2
        start = time.monotonic()
        await a.invalidate(PRODUCT, 2)  # logged, not raised
        assert time.monotonic() - start < 0.6
        assert (await a.get(PRODUCT, source.load)).version == 2  # type: ignore[union-attr]
        seconds = await until_version(lambda: b.get(PRODUCT, source.load), 2, limit=1.0)
        assert seconds < 0.3  # local_ttl, plus a failed Redis call at most
        slowest = 0.0
        for _ in range(60):  # reads stay fast: a failed Redis is skipped, not retried each time
            start = time.monotonic()
            await asyncio.sleep(0.04)
            await b.get(PRODUCT, source.load)
            slowest = max(slowest, time.monotonic() - start - 0.04)
        assert slowest < 0.1
        assert len(events(log_stream, "product_cache_redis_failed")) == 2  # once per process
        assert not events(log_stream, "product_cache_redis_recovered")

        # Redis comes back empty: the tombstone a could not write lands, and pub/sub resumes.
        await asyncio.to_thread(throwaway_redis.start)
        await until(lambda: a.subscribed and b.subscribed, limit=10)
        for _ in range(200):
            if await stored(link, namespace) is not None:
                break
            await asyncio.sleep(0.05)
        assert (await stored(link, namespace) or "").split("\n")[0] == "2"
        source.version = 3
        await a.invalidate(PRODUCT, 3)
        assert await stored(link, namespace) == "3"
    assert events(log_stream, "product_cache_redis_recovered")


async def test_a_stalled_redis_leaves_another_replica_stale_for_under_a_second(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    # SIGSTOP sends no RST: the subscription looks up until a keepalive fails (5 s), while b
    # holds its copy for followed_ttl (30 s). Its heartbeat not coming back is what tells.
    source = Source()
    async with AsyncExitStack() as stack:
        link = await stack.enter_async_context(
            open_redis(throwaway_redis.url, timeout=0.5, logger=logger)
        )
        a = await stack.enter_async_context(replica(link, logger, namespace))
        b = await stack.enter_async_context(replica(link, logger, namespace))
        await a.get(PRODUCT, source.load)
        await b.get(PRODUCT, source.load)
        signal_redis(throwaway_redis, signal.SIGSTOP)
        try:
            source.version = 2  # the write commits
            # b is read while a's invalidation waits out the timeout (its tombstone not sent).
            reading = asyncio.ensure_future(
                until_version(lambda: b.get(PRODUCT, source.load), 2, limit=3.0)
            )
            await a.invalidate(PRODUCT, 2)
            seconds = await reading
            assert b.subscribed  # the stall is not noticed as a lost subscription
        finally:
            signal_redis(throwaway_redis, signal.SIGCONT)
        print(f"\nwrite to the other replica serving it, Redis stalled: {seconds * 1000:.0f} ms")
        assert seconds < 1.0
        # Redis back: b follows again, and never goes back to the old copy.
        await until(lambda: b.following, limit=5)
        for _ in range(20):
            assert (await b.get(PRODUCT, source.load)).version == 2  # type: ignore[union-attr]
            await asyncio.sleep(0.05)


async def test_a_failed_load_reaches_every_waiter_and_caches_nothing(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    calls = 0

    async def broken() -> CachedProduct | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise OSError("database went away")

    async with replica(link, logger, namespace) as cache:
        results = await asyncio.gather(
            *(cache.get(PRODUCT, broken) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, OSError) for r in results)
        assert calls == 1
        source = Source()
        assert await cache.get(PRODUCT, source.load) is not None


async def test_a_caller_that_goes_away_does_not_cancel_the_load(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source = Source()
    source.delay = 0.05
    async with replica(link, logger, namespace) as cache:
        leader = asyncio.ensure_future(cache.get(PRODUCT, source.load))
        await source.started.wait()
        follower = asyncio.ensure_future(cache.get(PRODUCT, source.load))
        await asyncio.sleep(0)
        leader.cancel()
        found = await follower
        assert found is not None
        assert source.loads == 1


async def test_the_local_dict_is_bounded(logger: FilteringBoundLogger, namespace: str) -> None:
    loads: list[int] = []

    def loader(product_id: int) -> Callable[[], Awaitable[CachedProduct | None]]:
        async def load() -> CachedProduct | None:
            loads.append(product_id)
            return CachedProduct(1, '"x"', b"{}")

        return load

    async with open_redis(None, timeout=0.5, logger=logger) as link:
        cache = ProductCache(link, logger, namespace=namespace, registry=None, max_entries=100)
        for product_id in range(150):
            await cache.get(product_id, loader(product_id))
        loads.clear()
        await cache.get(149, loader(149))
        assert loads == []
        await cache.get(0, loader(0))
        assert loads == [0]  # the oldest went first


async def test_hits_and_misses_are_metrics(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    registry = CollectorRegistry()
    source = Source()
    source.delay = 0.02
    a = ProductCache(link, logger, namespace=namespace, registry=registry, multiprocess=False)
    b = ProductCache(link, logger, namespace=namespace, registry=None, multiprocess=False)
    await asyncio.gather(*(a.get(PRODUCT, source.load) for _ in range(5)))
    await a.get(PRODUCT, source.load)
    await b.get(PRODUCT, source.load)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"cache": "product", **labels})

    assert sample("hotpath_cache_requests_total", result="local_hit") == 1
    assert sample("hotpath_cache_requests_total", result="redis_hit") == 0
    assert sample("hotpath_cache_requests_total", result="miss") == 1
    assert sample("hotpath_cache_coalesced_total") == 4
    assert b.counts() == (0, 1, 0, 0)

    # Multiprocess mode: counters flushed into prometheus_client's objects, deltas only.
    shared = ProductCache(link, logger, namespace=namespace, registry=None, multiprocess=True)
    exported = CollectorRegistry()
    exported.register(shared.metrics.requests)
    await shared.get(PRODUCT, source.load)
    await shared.get(PRODUCT, source.load)
    shared.flush()
    shared.flush()
    labels = {"cache": "product", "result": "local_hit"}
    assert exported.get_sample_value("hotpath_cache_requests_total", labels) == 1
    labels["result"] = "redis_hit"
    assert exported.get_sample_value("hotpath_cache_requests_total", labels) == 1


async def test_copies_live_long_only_while_invalidations_are_followed(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    clock, source = Clock(), Source()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        replica(link, logger, namespace, local_ttl=0.5, followed_ttl=30, clock=clock) as cache,
    ):
        await cache.get(PRODUCT, source.load)
        for _ in range(3):  # past local_ttl, inside followed_ttl, heartbeats heard: a local hit
            clock.now += 0.3
            await until(lambda: cache.followed_until >= clock.now + 0.5, limit=5)
        await cache.get(PRODUCT, source.load)
        assert cache.counts() == (1, 0, 1, 0)

        throwaway_redis.kill()
        await until(lambda: not cache.subscribed, limit=5)
        source.version = 2  # a write this process can no longer hear about
        assert (await cache.get(PRODUCT, source.load)).version == 2  # type: ignore[union-attr]
        clock.now += 0.4
        await cache.get(PRODUCT, source.load)
        assert source.loads == 2
        clock.now += 0.2  # unfollowed copies expire after local_ttl
        source.version = 3
        assert (await cache.get(PRODUCT, source.load)).version == 3  # type: ignore[union-attr]
        assert source.loads == 3


async def test_followed_ttl_zero_turns_the_cache_off(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    source = Source()
    async with replica(link, logger, namespace, followed_ttl=0) as cache:
        for _ in range(3):
            assert (await cache.get(PRODUCT, source.load)) is not None
        assert source.loads == 3
        assert cache.counts() == (0, 0, 3, 0)
        assert await stored(link, namespace) is None


async def test_a_busy_process_keeps_its_copies_and_a_broken_subscription_drops_them(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    clock, source = Clock(), Source()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        replica(link, logger, namespace, local_ttl=0.5, followed_ttl=30, clock=clock) as cache,
    ):
        assert link.client is not None
        await cache.get(PRODUCT, source.load)
        # The process falls behind (its CPU saturated): its heartbeats come back long after
        # they were sent, on the same subscription, in order. It keeps its copies.
        clock.now += 2.0
        assert cache.follower.overdue()
        await until(lambda: cache.following, limit=5)
        await cache.get(PRODUCT, source.load)
        assert source.loads == 1
        assert cache.counts() == (1, 0, 1, 0)

        # The subscription breaks (the connection killed): invalidations sent while it was
        # down are lost, so the copies go, though heartbeats vouch again soon after.
        await link.client.client_kill(type_=coredis.PureToken.PUBSUB)
        await until(lambda: not cache.following, limit=5)
        await until(lambda: cache.following, limit=10)
        await cache.get(PRODUCT, source.load)
        assert cache.counts() == (1, 1, 1, 0)  # no local hit: the copy came from Redis again
