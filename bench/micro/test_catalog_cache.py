"""What a product read costs at each layer of the cache: a local hit, a Redis hit, a miss.

A round reads a batch of distinct ids inside one event-loop run, so neither the loop's start-up
nor one hot key hides the cost. The miss loads a real row from PostgreSQL; ``pg_load`` is that
load alone, what every read would pay without the cache.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
import pytest
import structlog
from pytest_benchmark.fixture import BenchmarkFixture

from server.catalog.cache import CachedProduct, ProductCache
from server.runtime.redis_link import RedisLink, open_redis

BATCH = 200
PAIR_ROUNDS = 20
REDIS_URL = os.environ.get("HOTPATH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("HOTPATH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROW = "SELECT $1::bigint AS id, 'Kettle' AS name, 4999 AS price_minor, 1 AS version"
LOGGER = structlog.wrap_logger(structlog.PrintLogger(open(os.devnull, "w")))  # noqa: SIM115


class Env:
    def __init__(self, loop: asyncio.AbstractEventLoop, link: RedisLink, conn: asyncpg.Connection):
        self.loop, self.link, self.conn = loop, link, conn
        self.namespace = f"hotpath:bench:{secrets.token_hex(4)}"
        self.ids = itertools.count()

    def loader(self, product_id: int) -> Callable[[], Awaitable[CachedProduct | None]]:
        async def load() -> CachedProduct | None:
            row = await self.conn.fetchrow(ROW, product_id)
            assert row is not None
            return CachedProduct(row["version"], f'"p-{product_id}-1"', orjson.dumps(dict(row)))

        return load

    def cache(self, *, always_expired: bool = False) -> ProductCache:
        ticks = itertools.count(step=1e9)  # every read sees the local TTL run out
        return ProductCache(
            self.link,
            LOGGER,
            namespace=self.namespace,
            local_ttl=3600.0,
            redis_ttl=30.0,  # the bench's keys leave the shared Redis soon
            registry=None,
            clock=(lambda: next(ticks)) if always_expired else time.monotonic,
        )

    def reads(self, cache: ProductCache, ids: Callable[[], list[int]]) -> Callable[[], None]:
        async def batch() -> None:
            for product_id in ids():
                await cache.get(product_id, self.loader(product_id))

        return lambda: self.loop.run_until_complete(batch())

    def variants(self) -> dict[str, Callable[[], None]]:
        warm = list(range(10**6, 10**6 + BATCH))
        local, remote = self.cache(), self.cache(always_expired=True)
        variants = {
            "local_hit": self.reads(local, lambda: warm),
            "redis_hit": self.reads(remote, lambda: warm),  # every local entry already expired
            "miss": self.reads(self.cache(), lambda: [next(self.ids) for _ in range(BATCH)]),
        }
        variants["local_hit"]()  # warms Redis and local's dict

        async def pg_only() -> None:
            for product_id in warm:
                await self.loader(product_id)()

        variants["pg_load"] = lambda: self.loop.run_until_complete(pg_only())
        return variants


@asynccontextmanager
async def connections() -> AsyncIterator[tuple[RedisLink, asyncpg.Connection]]:
    async with open_redis(REDIS_URL, timeout=0.5, logger=LOGGER) as link:
        if link.client is None:
            pytest.skip("Redis is not reachable")
        conn = await asyncpg.connect(PG_URL)
        try:
            yield link, conn
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    context = connections()
    link, conn = loop.run_until_complete(context.__aenter__())
    try:
        yield Env(loop, link, conn)
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def test_the_timed_reads_are_what_they_say(env: Env) -> None:
    local, remote, cold = env.cache(), env.cache(always_expired=True), env.cache()
    warm = [5 * 10**6 + n for n in range(10)]
    env.reads(cold, lambda: warm)()
    env.reads(local, lambda: warm)()
    env.reads(local, lambda: warm)()
    env.reads(remote, lambda: warm)()
    env.reads(remote, lambda: warm)()
    assert cold.counts() == (0, 0, 10, 0)
    assert local.counts() == (10, 10, 0, 0)
    assert remote.counts() == (0, 20, 0, 0)


@pytest.mark.benchmark(group="catalog-cache")
@pytest.mark.parametrize("variant", ["local_hit", "redis_hit", "miss", "pg_load"])
def test_read(benchmark: BenchmarkFixture, env: Env, variant: str) -> None:
    benchmark.extra_info["reads_per_round"] = BATCH
    benchmark(env.variants()[variant])


def _per_read_us(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / BATCH * 1e6


@pytest.mark.benchmark(group="catalog-cache-ratio")
def test_layer_ratios(
    benchmark: BenchmarkFixture, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleave the variants so machine noise hits them alike; print, never assert, ratios."""
    variants = env.variants()

    def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(PAIR_ROUNDS):
            for name, run in variants.items():
                samples[name].append(_per_read_us(run))
        return {name: min(times) for name, times in samples.items()}

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(best)
    local = best["local_hit"]
    with capsys.disabled():
        print(
            f"\nproduct read: local hit {local:.2f} us, Redis hit {best['redis_hit']:.1f} us"
            f" ({best['redis_hit'] / local:.0f}x), miss {best['miss']:.1f} us"
            f" ({best['miss'] / local:.0f}x), PostgreSQL load alone {best['pg_load']:.1f} us"
            f" ({best['pg_load'] / local:.0f}x)"
        )
