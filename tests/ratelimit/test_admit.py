"""RateLimiter.admit answers a leased request with headers it keeps on the lease (no Decision):
its bytes, and what it spends and counts, must stay those of try_acquire's Decision rendered by
rate_limit_headers, for every remaining count and reset, across digits and whole seconds."""

from __future__ import annotations

import dataclasses

import structlog
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from middleware.rate_limit import rate_limit_layer
from server.ratelimit import Decision, Policy, RateLimiter, rate_limit_headers
from server.ratelimit.leases import Lease
from server.ratelimit.setup import build_rate_limit
from server.runtime.redis_link import RedisLink
from server.runtime.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def leased(logger: FilteringBoundLogger, clock: Clock, policy: Policy, tokens: int) -> RateLimiter:
    """A limiter holding a lease of ``tokens`` on key "k", as a refill leaves it."""
    limiter = RateLimiter(
        RedisLink(None, timeout=0.5, logger=logger),
        logger,
        namespace="test",
        registry=None,
        clock=clock,
    )
    lease = Lease(limiter.metrics.counts(policy.name), clock.now)
    lease.tokens, lease.expires, lease.remaining = tokens, clock.now + 100.0, 95
    lease.full_at = clock.now + 3.0
    limiter._leases[policy.name, "k"] = lease
    return limiter


def state(limiter: RateLimiter, policy: Policy) -> tuple[object, ...]:
    lease = limiter._leases[policy.name, "k"]
    return lease.tokens, lease.demand, limiter.metrics.decisions


def test_admit_says_what_the_decision_would_across_digits_and_seconds(
    logger: FilteringBoundLogger,
) -> None:
    policy = Policy("read", 1200, 60.0)
    fast_clock, slow_clock = Clock(), Clock()
    fast = leased(logger, fast_clock, policy, 1010)
    slow = leased(logger, slow_clock, policy, 1010)
    # r from 1104 down to 95: past 1000 and 100; t from 3 through 0, at and around whole
    # seconds (full_at is 1003.0) and past full_at, where t stays 0.
    steps = [0.0, 0.5, 1.0, 1e-9, 0.499999, 0.5, 1e-6, 0.0, 0.25, 0.75, 2.0, 7.0]
    for index in range(1010):
        fast_clock.now = slow_clock.now = fast_clock.now + steps[index % len(steps)] / 100
        if index in (500, 1000):
            fast_clock.now = slow_clock.now = 1003.0 - (index == 500)  # exactly a second edge
        found = slow.try_acquire("k", policy)
        assert isinstance(found, Decision)
        assert found.allowed
        assert fast.admit("k", policy) == tuple(rate_limit_headers(found)), found
        assert state(fast, policy) == state(slow, policy)
    # Out of tokens: admit leaves the request to try_acquire, which counts it.
    assert fast.admit("k", policy) is None
    assert state(fast, policy) == state(slow, policy)


def test_admit_states_the_policy_it_is_given(logger: FilteringBoundLogger) -> None:
    clock = Clock()
    small, large = Policy("read", 100, 60.0), Policy("read", 5000, 1.0)
    limiter = leased(logger, clock, small, 10)
    for policy, quota in ((small, b'"read";q=100;w=60'), (large, b'"read";q=5000;w=1')):
        assert limiter.admit("k", policy) == (
            (b"ratelimit-policy", quota),
            (b"ratelimit", b'"read";r=%d;t=3' % (95 + limiter._leases["read", "k"].tokens)),
        )


def test_admit_leaves_a_lapsed_lease_and_a_missing_key_to_try_acquire(
    logger: FilteringBoundLogger,
) -> None:
    clock = Clock()
    policy = Policy("read", 100, 60.0)
    limiter = leased(logger, clock, policy, 10)
    assert limiter.admit("other", policy) is None
    clock.now += 100.0  # the lease's expiry: its tokens are void
    assert limiter.admit("k", policy) is None
    assert state(limiter, policy) == (10, 0, {"read": [0, 0]})


def test_the_app_is_built_with_the_layers_bound_call(settings: Settings) -> None:
    on = dataclasses.replace(settings, rate_limits=True)
    built = build_rate_limit(on, structlog.get_logger(), CollectorRegistry())
    assert built is not None
    factory: object = built[1].cls
    assert factory is rate_limit_layer
