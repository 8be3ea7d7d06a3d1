"""The rate limiter against the real Redis: each RateLimiter stands for one replica process.

Time is virtual: one clock drives the processes and, as ``redis_clock``, the script, so offered
load is exact (a request every millisecond is a request every millisecond) and so are the
expected admissions. The outage test kills a Redis of its own.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.ratelimit import Decision, Policy, RateLimiter, rate_limit_headers
from server.ratelimit.gcra import Grant
from server.ratelimit.headers import ratelimit, ratelimit_policy, retry_after
from server.runtime.redis_link import RedisLink, open_redis
from tests.fixtures.app import events
from tests.fixtures.databases import REDIS_URL
from tests.fixtures.shared_redis import commands
from tests.fixtures.support import ThrowawayRedis

SECOND = 1_000_000


class Clock:
    """Virtual time in whole microseconds (so the script's "now" converts back exactly)."""

    def __init__(self) -> None:
        self.us = 1_000 * SECOND

    def __call__(self) -> float:
        return self.us / SECOND

    def advance(self, seconds: float) -> None:
        self.us += round(seconds * SECOND)


@pytest.fixture
async def link(logger: FilteringBoundLogger) -> AsyncIterator[RedisLink]:
    async with open_redis(REDIS_URL, timeout=0.5, logger=logger) as link:
        assert link.client is not None
        yield link


@pytest.fixture
async def namespace(link: RedisLink) -> AsyncIterator[str]:
    namespace = f"hotpath:test:{secrets.token_hex(6)}"
    yield namespace
    assert link.client is not None
    found = [name async for name in link.client.scan_iter(match=f"{namespace}:*")]
    if found:
        await link.client.delete(found)


def replica(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, clock: Clock, **options: object
) -> RateLimiter:
    """One process' limiter on the shared virtual clock."""
    return RateLimiter(
        link,
        logger,
        namespace=namespace,
        registry=None,
        clock=clock,
        redis_clock=clock,
        **options,  # type: ignore[arg-type]
    )


async def decide(limiter: RateLimiter, key: str, policy: Policy) -> Decision:
    found = limiter.check(key, policy)
    return found if isinstance(found, Decision) else await found


async def test_a_hot_key_costs_a_redis_call_per_lease_not_per_request(
    link: RedisLink,
    logger: FilteringBoundLogger,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    limiter = replica(link, logger, namespace, clock)
    policy = Policy("hot", 100_000, 1.0)  # far above the traffic: every request is allowed
    seen = commands(link, monkeypatch)
    synchronous = 0
    for _ in range(1000):  # a second at 1000 requests/s
        found = limiter.check("k", policy)
        if isinstance(found, Decision):
            synchronous += 1
            decision = found
        else:
            decision = await found
        assert decision.allowed
        clock.advance(0.001)
    calls = seen.count(b"EVALSHA")
    print(f"\nhot key, 1000 requests/s: {calls} Redis calls in a second")
    # The first request leases 1 (a key's first request may be its only one); far from its
    # limit the next lease is a second of the key's traffic (at most half the bucket left).
    assert 2 <= calls <= 3
    assert synchronous == 1000 - calls
    assert limiter.metrics.decisions == {"hot": [1000, 0]}


async def test_a_cold_burst_makes_few_calls_and_all_get_an_answer(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    limiter = replica(link, logger, namespace, clock)
    seen = commands(link, monkeypatch)
    policy = Policy("cold", 10_000, 1.0)
    decisions = await asyncio.gather(*(limiter.acquire("k", policy) for _ in range(100)))
    assert all(decision.allowed for decision in decisions)
    # One call for the first (a lease of 1), one for the 99 that waited on it.
    assert seen.count(b"EVALSHA") == 2
    # Far from the limit the second lease takes up to half of what the bucket has left.
    slower = Policy("cold-slower", 1000, 1.0)
    decisions = await asyncio.gather(*(limiter.acquire("k", slower) for _ in range(100)))
    assert all(decision.allowed for decision in decisions)
    assert seen.count(b"EVALSHA") == 2 + 2


def test_near_its_limit_a_key_leases_50_ms_far_from_it_a_second() -> None:
    from server.ratelimit.leases import Lease

    policy = Policy("sizing", 1000, 1.0)  # mints 50 tokens in 50 ms
    lease = Lease([0, 0], now=0.0)
    assert lease.wanted(0.0, policy, lease_seconds=0.05, roomy_seconds=1.0, cap=1000) == 1
    lease.demand, lease.remaining = 100, 900  # 1000/s seen, the bucket 90% full
    assert lease.wanted(0.1, policy, lease_seconds=0.05, roomy_seconds=1.0, cap=1000) == 450
    assert lease.roomy
    lease.demand, lease.remaining = 100, 300  # the same traffic, the bucket 30% full
    assert lease.wanted(0.2, policy, lease_seconds=0.05, roomy_seconds=1.0, cap=1000) == 50
    assert not lease.roomy


async def test_a_low_limit_key_leases_one_token_at_a_time(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leasing ahead would strand a slow policy's tokens: 3 a minute must mean 3."""
    clock = Clock()
    limiter = replica(link, logger, namespace, clock)
    seen = commands(link, monkeypatch)
    policy = Policy("slow", 3, 60.0)  # a token every 20 s, a bucket of 3
    first = await asyncio.gather(*(limiter.acquire("k", policy) for _ in range(3)))
    assert [(d.allowed, d.remaining) for d in first] == [(True, 2), (True, 1), (True, 0)]
    assert seen.count(b"EVALSHA") == 3
    denied = await decide(limiter, "k", policy)
    assert not denied.allowed
    assert denied.retry_after_seconds == 20.0  # exact: the next token drips in 20 s from now
    assert denied.reset_seconds == 60.0
    clock.advance(20.0 - 1e-6)  # a microsecond early: still no
    assert not (await decide(limiter, "k", policy)).allowed
    clock.advance(1e-6)  # exactly when it said
    again = await decide(limiter, "k", policy)
    assert again.allowed
    assert again.remaining == 0
    assert not (await decide(limiter, "k", policy)).allowed


async def test_retry_after_on_a_hot_key_is_never_early(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    clock = Clock()
    limiter = replica(link, logger, namespace, clock)
    policy = Policy("busy", 100, 1.0, burst=10)
    decision = await decide(limiter, "k", policy)
    while decision.allowed:  # 1000 requests/s until the bucket is out
        clock.advance(0.001)
        decision = await decide(limiter, "k", policy)
    # Once out, a hot key waits for a batch (at most 50 ms more than the next token) instead
    # of asking Redis for each token; what it says is when it will say yes.
    assert 0.01 <= decision.retry_after_seconds <= 0.06
    clock.advance(decision.retry_after_seconds - 1e-6)
    assert not (await decide(limiter, "k", policy)).allowed
    clock.advance(1e-6)
    assert (await decide(limiter, "k", policy)).allowed


async def offer(
    limiters: list[RateLimiter], clock: Clock, key: str, policy: Policy, seconds: int
) -> list[int]:
    """Each limiter gets a request every millisecond (staggered); admissions per second."""
    start = clock.us
    admitted = [0] * seconds
    stagger = 1000 // len(limiters)
    for ms in range(seconds * 1000):
        for index, limiter in enumerate(limiters):
            clock.us = start + ms * 1000 + index * stagger
            admitted[ms // 1000] += (await decide(limiter, key, policy)).allowed
    return admitted


@pytest.mark.parametrize("limit", [500, 1500])
async def test_two_replicas_together_admit_the_limit_within_5_percent(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, limit: int
) -> None:
    clock = Clock()
    a = replica(link, logger, namespace, clock)
    b = replica(link, logger, namespace, clock)
    policy = Policy("shared", limit, 1.0)
    admitted = await offer([a, b], clock, "k", policy, seconds=6)
    calls = a.metrics.redis_ok + b.metrics.redis_ok
    print(
        f"\nlimit {limit}/s, 2 x 1000 requests/s offered: admitted per second {admitted},"
        f" {calls / 6:.0f} Redis calls per second"
    )
    total = sum(admitted)
    expected = policy.capacity + 6 * limit  # the bucket, then the drip
    assert abs(total - expected) <= 0.05 * expected
    # Once the bucket is spent (2000 offered against 1500 drains 1500 in 3 s), each second
    # admits the limit.
    for second in admitted[4:]:
        assert abs(second - limit) <= 0.05 * limit
    assert calls < 12_000 / 20  # saturated or not, far fewer calls than requests


async def test_a_noisy_key_does_not_crowd_out_another(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    clock = Clock()
    a = replica(link, logger, namespace, clock)
    b = replica(link, logger, namespace, clock)
    policy = Policy("per-client", 100, 1.0, burst=20)
    start = clock.us
    noisy, quiet, quiet_offered = 0, 0, 0
    for ms in range(3000):
        for index, limiter in enumerate((a, b)):
            clock.us = start + ms * 1000 + index * 500
            noisy += (await decide(limiter, "noisy", policy)).allowed
            if ms % 25 == 0:  # 40 requests/s per replica, under the limit together
                quiet_offered += 1
                quiet += (await decide(limiter, "quiet", policy)).allowed
    assert quiet == quiet_offered == 240
    expected = 20 + 3 * 100
    assert abs(noisy - expected) <= 0.05 * expected
    assert a.metrics.redis_ok + b.metrics.redis_ok < 6000 / 10


def test_headers_follow_the_ietf_draft() -> None:
    allowed = Decision(True, "api", 100, 60.0, 42, 6.2, 0.0)
    assert ratelimit_policy(allowed) == '"api";q=100;w=60'
    assert ratelimit(allowed) == '"api";r=42;t=7'  # rounded up, never early
    assert retry_after(allowed) is None
    assert rate_limit_headers(allowed) == [
        (b"ratelimit-policy", b'"api";q=100;w=60'),
        (b"ratelimit", b'"api";r=42;t=7'),
    ]
    denied = Decision(False, "api", 100, 0.5, 0, 0.0004, 0.0002)
    assert ratelimit_policy(denied) == '"api";q=100;w=1'
    assert ratelimit(denied) == '"api";r=0;t=1'
    assert retry_after(denied) == "1"  # a denial always says at least 1
    assert retry_after(Decision(False, "api", 1, 1.0, 0, 3.0, 2.0)) == "2"
    assert retry_after(Decision(False, "api", 1, 1.0, 0, 3.0, 2.000001)) == "3"
    assert rate_limit_headers(denied)[-1] == (b"retry-after", b"1")


async def test_a_redis_outage_limits_each_replica_to_its_share_and_recovers(
    logger: FilteringBoundLogger, log_stream: io.BytesIO, throwaway_redis: ThrowawayRedis
) -> None:
    clock = Clock()
    policy = Policy("shared", 100, 1.0, burst=10)
    async with open_redis(throwaway_redis.url, timeout=0.5, logger=logger) as link:
        # Redis on the virtual clock too: on its own TIME, a slow run lets the bucket the last
        # lines spend refill while they run, and one request too many is admitted.
        limiter = RateLimiter(
            link,
            logger,
            namespace="hotpath:test",
            replicas=2,
            registry=None,
            clock=clock,
            redis_clock=clock,
        )
        assert (await decide(limiter, "k", policy)).allowed
        assert not limiter.fallback_active
        ok_before = limiter.metrics.redis_ok

        throwaway_redis.kill()
        clock.advance(1.0)  # what was leased before has expired
        admitted = 0
        for _ in range(2000):  # 2 s at 1000 requests/s: no exception, an answer each time
            admitted += (await decide(limiter, "k", policy)).allowed
            clock.advance(0.001)
        assert limiter.fallback_active
        # This replica's share: 50/s with a bucket of 5. The 5 at once, then one each 20 ms.
        assert admitted == 5 + 99
        # Redis is tried once per paused second, not per request.
        assert 2 <= limiter.metrics.redis_errors <= 3
        fallback = events(log_stream, "rate_limit_fallback")
        assert len(fallback) == 1
        assert fallback[0]["log.level"] == "warning"
        assert fallback[0]["reason"] == "ConnectionError"
        assert not events(log_stream, "rate_limit_redis_recovered")

        await asyncio.to_thread(throwaway_redis.start)
        for _ in range(100):
            clock.advance(1.1)  # past the pause: the next request probes Redis
            await decide(limiter, "k", policy)
            if not limiter.fallback_active:
                break
            await asyncio.sleep(0.05)
        assert not limiter.fallback_active
        assert limiter.metrics.redis_ok > ok_before
        assert len(events(log_stream, "rate_limit_redis_recovered")) == 1
        assert len(events(log_stream, "rate_limit_fallback")) == 1
        # Shared again: the whole bucket of 10 is Redis' to give.
        clock.advance(1.0)
        allowed = [(await decide(limiter, "k2", policy)).allowed for _ in range(12)]
        assert allowed == [True] * 10 + [False] * 2


async def test_without_redis_configured_the_process_limits_alone(
    logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    clock = Clock()
    policy = Policy("solo", 5, 1.0)
    async with open_redis(None, timeout=0.5, logger=logger) as link:
        limiter = RateLimiter(link, logger, namespace="hotpath:test", registry=None, clock=clock)
        decisions = [limiter.check("k", policy) for _ in range(6)]  # no I/O: all synchronous
        assert all(isinstance(d, Decision) for d in decisions)
        assert [d.allowed for d in decisions] == [True] * 5 + [False]  # type: ignore[union-attr]
        assert decisions[-1].retry_after_seconds == 0.2  # type: ignore[union-attr]
        clock.advance(0.2)
        assert (await decide(limiter, "k", policy)).allowed
        assert not (await decide(limiter, "k", policy)).allowed
    assert limiter.fallback_active
    [line] = events(log_stream, "rate_limit_fallback")
    assert line["reason"] == "redis_not_configured"
    assert line["log.level"] == "info"


async def test_decisions_and_calls_are_metrics(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    clock = Clock()
    registry = CollectorRegistry()
    limiter = RateLimiter(
        link,
        logger,
        namespace=namespace,
        registry=registry,
        clock=clock,
        redis_clock=clock,
        multiprocess=False,
    )
    policy = Policy("metered", 2, 1.0)
    for _ in range(3):
        await decide(limiter, "k", policy)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    decisions = "hotpath_rate_limit_decisions_total"
    assert sample(decisions, policy="metered", result="allowed") == 2
    assert sample(decisions, policy="metered", result="denied") == 1
    # The third was refused locally: Redis had said when the next token comes.
    assert sample("hotpath_rate_limit_redis_calls_total", result="ok") == 2
    assert sample("hotpath_rate_limit_redis_calls_total", result="error") == 0
    assert sample("hotpath_rate_limit_fallback_active") == 0

    # Multiprocess mode: flushed into prometheus_client's objects, deltas only.
    shared = replica(link, logger, namespace, clock, multiprocess=True)
    exported = CollectorRegistry()
    exported.register(shared.metrics._decisions)
    await decide(shared, "k2", policy)
    shared.flush()
    await decide(shared, "k2", policy)
    shared.flush()
    shared.flush()
    labels = {"policy": "metered", "result": "allowed"}
    assert exported.get_sample_value(decisions, labels) == 2


async def test_the_state_per_key_is_bounded(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str
) -> None:
    clock = Clock()
    limiter = replica(link, logger, namespace, clock, max_keys=50)
    policy = Policy("many", 10, 1.0)
    for n in range(120):
        assert (await decide(limiter, f"client-{n}", policy)).allowed
    assert limiter.keys() <= 50
    assert (await decide(limiter, "client-119", policy)).allowed  # recent keys are kept
    clock.advance(1.0)
    limiter.sweep()  # nothing leased, nothing denied: nothing to keep
    assert limiter.keys() == 0


def test_options_are_checked_at_once(logger: FilteringBoundLogger) -> None:
    link = RedisLink(None, timeout=0.5, logger=logger)
    for bad in ({"replicas": 0}, {"lease_seconds": 0.5, "lease_ttl": 0.2}, {"max_lease": 0}):
        with pytest.raises(ValueError, match=r"replicas|lease|max"):
            RateLimiter(link, logger, namespace="n", registry=None, **bad)


async def test_a_caller_that_goes_away_leaves_the_answer_to_the_others(
    link: RedisLink, logger: FilteringBoundLogger, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = replica(link, logger, namespace, Clock())
    policy = Policy("patient", 10, 1.0)
    gate = asyncio.Event()
    take = limiter._gcra.take

    async def held(*args: Any, **kwargs: Any) -> Grant:
        await gate.wait()
        return await take(*args, **kwargs)

    monkeypatch.setattr(limiter._gcra, "take", held)
    leader = asyncio.create_task(limiter.acquire("k", policy))
    await asyncio.sleep(0)
    follower = asyncio.create_task(limiter.acquire("k", policy))
    await asyncio.sleep(0)
    leader.cancel()
    gate.set()
    assert (await follower).allowed  # the leader's flight went on, and its token is the follower's
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert limiter.metrics.redis_ok == 1


async def test_a_slow_redis_costs_one_timeout_then_a_paused_second(
    logger: FilteringBoundLogger, log_stream: io.BytesIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    async with open_redis(REDIS_URL, timeout=0.05, logger=logger) as link:
        limiter = RateLimiter(link, logger, namespace="hotpath:test", registry=None, clock=clock)

        async def stuck(*args: Any, **kwargs: Any) -> Grant:
            await asyncio.sleep(10)
            raise AssertionError("not reached")

        monkeypatch.setattr(limiter._gcra, "take", stuck)
        policy = Policy("slow-redis", 10, 1.0)
        assert (await decide(limiter, "k", policy)).allowed  # decided locally after the timeout
        for _ in range(50):  # within the paused second: no further attempt, all synchronous
            clock.advance(0.01)
            assert isinstance(limiter.check("k", policy), Decision)
        assert limiter.metrics.redis_errors == 1
        [line] = events(log_stream, "rate_limit_fallback")
        assert line["reason"] == "TimeoutError"
