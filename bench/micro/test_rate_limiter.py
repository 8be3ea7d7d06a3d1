"""What one rate-limit decision costs on a hot key: spent from a local lease, or a Redis call.

``leased`` is the limiter as configured for production: a hot key makes a Redis call per lease
(up to ``max_lease`` tokens) and answers the rest synchronously. ``per_call`` leases one token
at a time, which is what a limiter without leasing pays on every request. A round decides a
batch inside one event-loop run; the ratio test interleaves the two and compares CPU time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Iterator

import pytest
import structlog
from pytest_benchmark.fixture import BenchmarkFixture

from server.ratelimit import Decision, Policy, RateLimiter
from server.runtime.redis_link import RedisLink, open_redis

BATCH = 1000
PAIR_ROUNDS = 8
REDIS_URL = os.environ.get("HOTPATH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LOGGER = structlog.wrap_logger(structlog.PrintLogger(open(os.devnull, "w")))  # noqa: SIM115
# Far above what a round offers: every decision is allowed, so both variants time the same
# outcome. The bucket refills in a second, so the bench's keys leave the shared Redis soon.
POLICY = Policy("bench", 1_000_000, 1.0)


class Env:
    def __init__(self, loop: asyncio.AbstractEventLoop, link: RedisLink) -> None:
        self.loop, self.link = loop, link
        self.namespace = f"hotpath:bench:{secrets.token_hex(4)}"

    def limiter(self, *, max_lease: int) -> RateLimiter:
        return RateLimiter(
            self.link, LOGGER, namespace=self.namespace, registry=None, max_lease=max_lease
        )

    def decisions(self, limiter: RateLimiter, key: str) -> Callable[[], None]:
        async def batch() -> None:
            for _ in range(BATCH):
                found = limiter.check(key, POLICY)
                decision = found if isinstance(found, Decision) else await found
                assert decision.allowed

        return lambda: self.loop.run_until_complete(batch())

    def variants(self) -> dict[str, Callable[[], None]]:
        variants = {
            "leased": self.decisions(self.limiter(max_lease=1000), "hot-leased"),
            "per_call": self.decisions(self.limiter(max_lease=1), "hot-per-call"),
        }
        for run in variants.values():
            run()  # warm: the script is loaded, the leased key's rate is known
        return variants

    async def clean(self) -> None:
        client = self.link.client
        if client is not None:
            found = [name async for name in client.scan_iter(match=f"{self.namespace}:*")]
            if found:
                await client.delete(found)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    context = open_redis(REDIS_URL, timeout=0.5, logger=LOGGER)
    link = loop.run_until_complete(context.__aenter__())
    try:
        if link.client is None:
            pytest.skip("Redis is not reachable")
        env = Env(loop, link)
        yield env
        loop.run_until_complete(env.clean())
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def test_the_timed_paths_are_what_they_say(env: Env) -> None:
    leased, per_call = env.limiter(max_lease=1000), env.limiter(max_lease=1)
    for limiter, key in ((leased, "check-leased"), (per_call, "check-per-call")):
        env.decisions(limiter, key)()
        env.decisions(limiter, key)()
    assert per_call.metrics.redis_ok == 2 * BATCH
    assert leased.metrics.redis_ok <= 2 * BATCH // 100
    assert leased.metrics.decisions == per_call.metrics.decisions == {"bench": [2 * BATCH, 0]}


@pytest.mark.benchmark(group="rate-limiter")
@pytest.mark.parametrize("variant", ["leased", "per_call"])
def test_decide(benchmark: BenchmarkFixture, env: Env, variant: str) -> None:
    benchmark.extra_info["decisions_per_round"] = BATCH
    benchmark(env.variants()[variant])


def _cpu_per_decision_us(run: Callable[[], None]) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) / BATCH * 1e6


@pytest.mark.benchmark(group="rate-limiter-ratio")
def test_a_leased_decision_is_at_least_10x_cheaper_than_a_redis_call(
    benchmark: BenchmarkFixture, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleaved rounds so machine noise hits both alike; the best round of each counts.
    CPU time of this process: what a decision costs the server, not Redis' own work."""
    variants = env.variants()

    def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(PAIR_ROUNDS):
            for name, run in variants.items():
                samples[name].append(_cpu_per_decision_us(run))
        return {name: min(times) for name, times in samples.items()}

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info.update(best)
    ratio = best["per_call"] / best["leased"]
    with capsys.disabled():
        print(
            f"\nrate-limit decision, CPU: leased {best['leased']:.2f} us,"
            f" a Redis call each {best['per_call']:.1f} us ({ratio:.0f}x)"
        )
    assert ratio >= 10
