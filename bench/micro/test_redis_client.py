"""What one Redis call costs hotpath's process, on the client as hotpath configures it.

Every variant runs on ``make_client``'s client inside ``asyncio.timeout``, as the call sites do:

- ``script``: a Lua script through ``RedisScript`` (EVALSHA; EVAL only after NOSCRIPT), as the
  cache's SET-IF-NEWER, the limiter's GCRA and the write marks call theirs.
- ``coredis_script``: the same script through coredis' ``Script`` object, as they did before
  decision 0015: three command objects a call instead of one.
- ``eval``: EVAL with the script's text, as the catalog's tombstones are sent.
- ``get``: a GET, the cache's Redis read.
- ``asyncpg``: ``fetchval('select 1')`` on a bare asyncpg connection, the yardstick: a
  PostgreSQL round trip.

And what receiving a pub/sub message costs, published and awaited in lock step: through
``follow_channel`` (server/runtime/resp_subscriber.py on one server), through coredis' PubSub
as hotpath subscribed before, and the publish alone (nobody subscribed in this process).

A round makes a batch of calls inside one event-loop run. The ratio test interleaves the variants
and compares this process's CPU time (what a call costs the server, not Redis' own work); the
call-count test counts the Python calls a script call makes, which no machine noise moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import asyncpg
import coredis
import pytest
import structlog
from coredis.commands.script import Script
from pytest_benchmark.fixture import BenchmarkFixture

from server.runtime.pubsub import KEEPALIVE_SECONDS, follow_channel
from server.runtime.redis_client import RedisClient
from server.runtime.redis_link import RedisLink, open_redis
from server.runtime.redis_script import RedisScript

BATCH = 500
PAIR_ROUNDS = 10
TIMEOUT = 0.5  # hotpath's default HOTPATH_REDIS_TIMEOUT
LOGGER = structlog.wrap_logger(structlog.PrintLogger(open(os.devnull, "w")))  # noqa: SIM115
REDIS_URL = os.environ.get("HOTPATH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("HOTPATH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# One key, one short GET and SET, like the cache's and the limiter's scripts; the count it
# returns shows each call ran the script once.
COUNT = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""
VARIANTS = ("script", "coredis_script", "eval", "get", "asyncpg")


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    link: RedisLink
    client: RedisClient
    pg: asyncpg.Connection
    namespace: str

    def calls(self, variant: str) -> Callable[[], Awaitable[object]]:
        """One call of ``variant``, on a key of its own."""
        client, key, ttl = self.client, f"{self.namespace}:{variant}", 60_000
        script, coredis_script = RedisScript(COUNT), Script[str](script=COUNT)

        async def run_script() -> object:
            async with asyncio.timeout(TIMEOUT):
                return await script.run(client, [key], [ttl])

        async def run_coredis_script() -> object:
            async with asyncio.timeout(TIMEOUT):
                return await coredis_script([key], [ttl], client)

        async def run_eval() -> object:
            async with asyncio.timeout(TIMEOUT):
                return await client.eval(COUNT, keys=[key], args=[ttl])

        async def run_get() -> object:
            async with asyncio.timeout(TIMEOUT):
                return await client.get(key)

        async def run_asyncpg() -> object:
            return await self.pg.fetchval("select 1", timeout=TIMEOUT)

        return {
            "script": run_script,
            "coredis_script": run_coredis_script,
            "eval": run_eval,
            "get": run_get,
            "asyncpg": run_asyncpg,
        }[variant]

    def batch(self, variant: str) -> Callable[[], None]:
        call = self.calls(variant)

        async def batch() -> None:
            for _ in range(BATCH):
                await call()

        return lambda: self.loop.run_until_complete(batch())

    def python_calls(self, variant: str, n: int = 100) -> float:
        """Python and C function calls per call of ``variant`` (its first calls not counted)."""
        call, counted = self.calls(variant), 0

        def count(frame: FrameType, event: str, arg: object) -> None:
            nonlocal counted
            if event in ("call", "c_call"):
                counted += 1

        async def calls() -> None:
            for _ in range(10):
                await call()
            sys.setprofile(count)
            try:
                for _ in range(n):
                    await call()
            finally:
                sys.setprofile(None)

        self.loop.run_until_complete(calls())
        return counted / n

    def python_calls_received(self, subscriber: str, n: int = 200) -> float:
        """Python and C function calls per message published and received back by
        ``subscriber`` ("follow_channel", "coredis_pubsub", or "none": the publish alone)."""
        channel, counted = f"{self.namespace}:channel:{subscriber}", 0
        arrived, subscribed = asyncio.Event(), asyncio.Event()

        def on_message(data: object) -> None:
            arrived.set()

        def count(frame: FrameType, event: str, arg: object) -> None:
            nonlocal counted
            if event in ("call", "c_call"):
                counted += 1

        async def follow_with_coredis() -> None:
            assert isinstance(self.client, coredis.Redis)
            async with self.client.pubsub(
                channels=[channel],
                ignore_subscribe_messages=True,
                retry_policy=None,
                max_idle_seconds=KEEPALIVE_SECONDS,
            ) as pubsub:
                subscribed.set()
                async for message in pubsub:
                    on_message(message["data"])

        async def one() -> None:
            arrived.clear()
            async with asyncio.timeout(5):  # counted calls, not time: a loaded box may be slow
                await self.client.publish(channel, "1234")
                if subscriber != "none":
                    await arrived.wait()

        async def calls() -> None:
            task = None
            if subscriber == "follow_channel":
                task = asyncio.create_task(
                    follow_channel(
                        self.link,
                        channel,
                        on_message=on_message,
                        on_subscribed=lambda up: subscribed.set() if up else None,
                        logger=LOGGER,
                        event="bench",
                    )
                )
            elif subscriber == "coredis_pubsub":
                task = asyncio.create_task(follow_with_coredis())
            try:
                if task is not None:
                    await subscribed.wait()
                for _ in range(10):
                    await one()
                sys.setprofile(count)
                try:
                    for _ in range(n):
                        await one()
                finally:
                    sys.setprofile(None)
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        self.loop.run_until_complete(calls())
        return counted / n

    async def clean(self) -> None:
        await self.client.delete([f"{self.namespace}:{variant}" for variant in VARIANTS])


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    context = open_redis(REDIS_URL, timeout=TIMEOUT, logger=LOGGER)  # hotpath's client, held
    link = loop.run_until_complete(context.__aenter__())
    try:
        if link.client is None:
            pytest.skip("Redis is not reachable")
        pg = loop.run_until_complete(asyncpg.connect(PG_URL))
        env = Env(loop, link, link.client, pg, f"hotpath:bench:{secrets.token_hex(4)}")
        try:
            yield env
            loop.run_until_complete(env.clean())
        finally:
            loop.run_until_complete(pg.close())
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def test_the_timed_calls_are_what_they_say(env: Env) -> None:
    for variant in ("script", "coredis_script", "eval"):
        env.batch(variant)()
    counts = {variant: env.calls(variant) for variant in ("script", "coredis_script", "eval")}
    for variant, call in counts.items():
        # One script run per call, no more (each key counts its own runs).
        assert env.loop.run_until_complete(call()) == BATCH + 1, variant
    assert env.loop.run_until_complete(env.calls("get")()) is None  # a key of its own, unset
    assert env.loop.run_until_complete(env.calls("asyncpg")()) == 1


def test_a_script_redis_lacks_is_sent_and_loaded(env: Env) -> None:
    # A text Redis has never seen, as after a restart (no SCRIPT FLUSH: Redis is shared).
    script = RedisScript(f"-- {secrets.token_hex(8)}{COUNT}")
    key = f"{env.namespace}:script"

    async def twice() -> tuple[object, object]:
        assert await env.client.script_exists([script.sha]) == (False,)
        first = await script.run(env.client, [key], [60_000])  # NOSCRIPT, then EVAL
        assert await env.client.script_exists([script.sha]) == (True,)
        return first, await script.run(env.client, [key], [60_000])

    first, second = env.loop.run_until_complete(twice())
    assert isinstance(first, int)
    assert second == first + 1


@pytest.mark.benchmark(group="redis-client")
@pytest.mark.parametrize("variant", VARIANTS)
def test_call(benchmark: BenchmarkFixture, env: Env, variant: str) -> None:
    benchmark.extra_info["calls_per_round"] = BATCH
    benchmark(env.batch(variant))


def test_a_script_call_makes_fewer_python_calls_than_through_coredis_script(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    counted = {variant: env.python_calls(variant) for variant in VARIANTS}
    with capsys.disabled():
        print(
            "\nPython calls per call: "
            + ", ".join(f"{variant} {n:.0f}" for variant, n in counted.items())
        )
    assert counted["script"] < 0.95 * counted["coredis_script"]  # 0.91 at coredis 6.9


def test_a_received_message_makes_a_fifth_of_the_python_calls_or_fewer_of_coredis_pubsub(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    counted = {
        subscriber: env.python_calls_received(subscriber)
        for subscriber in ("none", "follow_channel", "coredis_pubsub")
    }
    received = {
        subscriber: counted[subscriber] - counted["none"]
        for subscriber in ("follow_channel", "coredis_pubsub")
    }
    with capsys.disabled():
        print(
            f"\nPython calls per message received: {received} (the publish alone"
            f" {counted['none']:.0f})"
        )
    assert received["follow_channel"] < 0.2 * received["coredis_pubsub"]  # 28 / 578 now


def _cpu_per_call_us(run: Callable[[], None]) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) / BATCH * 1e6


@pytest.mark.benchmark(group="redis-client-ratio")
def test_a_script_call_costs_less_cpu_than_through_coredis_script(
    benchmark: BenchmarkFixture, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleaved rounds so machine noise hits every variant alike; the best round counts."""
    batches = {variant: env.batch(variant) for variant in VARIANTS}

    def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {variant: [] for variant in batches}
        for _ in range(PAIR_ROUNDS):
            for variant, run in batches.items():
                samples[variant].append(_cpu_per_call_us(run))
        return {variant: min(times) for variant, times in samples.items()}

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(best)
    yardstick = best["asyncpg"]
    with capsys.disabled():
        print(
            "\nCPU per call: "
            + ", ".join(
                f"{variant} {us:.1f} us ({us / yardstick:.1f}x asyncpg)"
                for variant, us in best.items()
            )
        )
    assert best["script"] < best["coredis_script"]
