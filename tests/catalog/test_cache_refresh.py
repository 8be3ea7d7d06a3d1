"""A followed copy near its expiry is loaded again in the background while it is served, so a
product in steady demand never has a read wait for Redis (issue 19, item 5). Real Redis (one of
the test's own), a clock moved by hand."""

from __future__ import annotations

import asyncio

from structlog.typing import FilteringBoundLogger

from server.runtime.redis_link import open_redis
from tests.catalog.test_cache import PRODUCT, Source, replica
from tests.fixtures.clock import Clock
from tests.fixtures.shared_redis import redis_namespace
from tests.fixtures.support import ThrowawayRedis, until

__all__ = ["redis_namespace"]  # the fixture: namespace


async def test_a_copy_in_demand_is_renewed_before_it_lapses(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    clock, source = Clock(), Source()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        replica(link, logger, namespace, local_ttl=0.5, followed_ttl=30, clock=clock) as cache,
    ):
        await until(lambda: cache.followed_until > clock.now, limit=5)
        await cache.get(PRODUCT, source.load)  # a miss: loaded, stored in Redis too
        assert cache.counts() == (0, 0, 1, 0)
        # Before 75% of followed_ttl: a hit, nothing loaded.
        clock.now += 22.0
        await until(lambda: cache.followed_until > clock.now, limit=5)
        await cache.get(PRODUCT, source.load)
        assert not cache._flights
        # Past 90%: the hit is served at once and starts the next copy's load (from Redis).
        clock.now += 5.5
        await until(lambda: cache.followed_until > clock.now, limit=5)
        await cache.get(PRODUCT, source.load)
        assert PRODUCT in cache._flights
        await asyncio.wait(list(cache._flights.values()))
        # Past the first copy's expiry: the renewed copy is served, still no read has waited.
        clock.now += 3.0
        await until(lambda: cache.followed_until > clock.now, limit=5)
        await cache.get(PRODUCT, source.load)
        assert cache.counts() == (3, 0, 1, 0)  # HEAD's cache: (2, 1, 1, 0), a Redis hit
        assert source.loads == 1


async def test_an_unfollowed_copy_is_not_renewed(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    clock, source = Clock(), Source()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        replica(link, logger, namespace, local_ttl=0.5, followed_ttl=30, clock=clock) as cache,
    ):
        throwaway_redis.kill()
        await until(lambda: not cache.subscribed, limit=5)
        await cache.get(PRODUCT, source.load)
        clock.now += 0.4  # inside local_ttl: a hit, and no load started
        await cache.get(PRODUCT, source.load)
        assert not cache._flights
        assert source.loads == 1


async def test_a_refresh_landing_while_heartbeats_are_overdue_keeps_the_copy(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    clock, source = Clock(), Source()
    async with (
        open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link,
        replica(link, logger, namespace, local_ttl=0.5, followed_ttl=30, clock=clock) as cache,
    ):
        assert link.client is not None
        await until(lambda: cache.followed_until > clock.now, limit=5)
        await cache.get(PRODUCT, source.load)
        kept = cache._local[PRODUCT][0]
        await link.client.delete([f"{namespace}:product:{PRODUCT}"])  # the refresh loads
        source.gate = asyncio.Event()
        clock.now += 27.5
        await until(lambda: cache.followed_until > clock.now, limit=5)
        await cache.get(PRODUCT, source.load)  # starts the refresh, held at the gate
        flight = cache._flights[PRODUCT]
        await source.started.wait()
        clock.now += 1.0  # heartbeats overdue when it lands
        source.gate.set()
        await flight
        assert cache._local[PRODUCT][0] == kept  # the followed copy, not a 0.5 s one
