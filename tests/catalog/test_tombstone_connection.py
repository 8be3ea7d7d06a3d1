"""An order's tombstones on the link's own command connection (server/runtime/resp_commands.py):
sent while Redis stalls, they time out and stay pending, and the retry lands them, so another
app instance (a link and cache of its own) drops its copies and never serves the old rows
again. A Redis of the test's own."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack

from structlog.typing import FilteringBoundLogger

from server.runtime.redis_link import open_redis
from tests.catalog.test_cache import PRODUCT, Source, replica, until_version
from tests.fixtures.faults import signal_redis
from tests.fixtures.shared_redis import redis_namespace
from tests.fixtures.support import ThrowawayRedis, until

__all__ = ["redis_namespace"]  # fixture: namespace


async def test_an_orders_tombstones_reach_another_instance_after_a_redis_blip(
    logger: FilteringBoundLogger, namespace: str, throwaway_redis: ThrowawayRedis
) -> None:
    ids = (PRODUCT, PRODUCT + 1)
    sources = {product_id: Source() for product_id in ids}
    async with AsyncExitStack() as stack:
        links = [
            await stack.enter_async_context(
                open_redis(throwaway_redis.url, timeout=0.3, logger=logger)
            )
            for _ in range(2)
        ]
        writer = await stack.enter_async_context(replica(links[0], logger, namespace))
        other = await stack.enter_async_context(replica(links[1], logger, namespace))
        for product_id in ids:
            await writer.get(product_id, sources[product_id].load)
            await other.get(product_id, sources[product_id].load)  # a Redis hit: version 1
        commands = links[0].commands
        assert commands is not None
        first = await commands.execute(b"CLIENT", b"ID")
        signal_redis(throwaway_redis, signal.SIGSTOP)
        try:
            for source in sources.values():
                source.version = 2  # the order commits
            await writer.invalidate_many([(product_id, 2) for product_id in ids])
            assert set(writer.shared._pending) == set(ids)  # timed out: kept to resend
        finally:
            signal_redis(throwaway_redis, signal.SIGCONT)
        # The retry (every REDIS_PAUSE) lands them; the other instance reads version 2 and
        # never the old row again, from its copy or from Redis.
        await until(lambda: not writer.shared._pending, limit=5)
        assert links[1].client is not None
        for product_id in ids:
            stored = await links[1].client.get(f"{namespace}:product:{product_id}")
            assert (stored or "").split("\n")[0] == "2"
        await until(lambda: other.following, limit=5)
        for product_id in ids:
            load = sources[product_id].load
            await until_version(lambda: other.get(product_id, load), 2, limit=2.0)  # noqa: B023
        for _ in range(20):
            for product_id in ids:
                found = await other.get(product_id, sources[product_id].load)
                assert found is not None
                assert found.version == 2
            await asyncio.sleep(0.05)
        assert await commands.execute(b"CLIENT", b"ID") != first  # the timeout closed it
