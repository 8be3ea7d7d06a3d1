"""A key in steady use gets its next lease before the current one lapses, so none of its
requests waits on Redis (issue 19, item 5: the warm read's tail in the open-model run was the
requests that waited for their key's refill). Real Redis, virtual time (test_limiter.py's)."""

from __future__ import annotations

import asyncio
import math

import pytest
from structlog.typing import FilteringBoundLogger

from server.ratelimit import Policy, RateLimiter
from server.ratelimit.gcra import Grant
from server.ratelimit.leases import Lease
from server.runtime.redis_link import RedisLink
from tests.fixtures.shared_redis import commands
from tests.ratelimit.test_limiter import Clock, decide, link, namespace, replica

__all__ = ["link", "namespace"]  # the fixtures, imported to be found here


async def offer(limiter: RateLimiter, clock: Clock, policy: Policy, seconds: int) -> list[int]:
    """A request a millisecond on key "k" as the middleware makes it (admit, else a decision
    through Redis); a refill started ahead lands before the next request. The milliseconds
    whose request admit left to Redis."""
    waited = []
    for ms in range(seconds * 1000):
        if limiter.admit("k", policy) is None:
            waited.append(ms)
            assert (await decide(limiter, "k", policy)).allowed
        elif limiter._flights:
            await asyncio.wait(list(limiter._flights.values()))
        clock.advance(0.001)
    return waited


async def test_a_key_in_steady_use_never_waits_for_its_next_lease(
    link: RedisLink,
    logger: FilteringBoundLogger,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    limiter = replica(link, logger, namespace, clock)
    policy = Policy("read", 100_000, 1.0)  # far from the limit: roomy leases of a second
    seen = commands(link, monkeypatch)
    waited = await offer(limiter, clock, policy, seconds=4)
    # The key's first request leases 1, the second a second's worth sized on one request:
    # both wait. From then on each lease is asked for while the last one still admits (the
    # old limiter let each lapse, once a second, and the request after waited: 5 in all).
    assert waited == [0, 1]
    calls = seen.count(b"EVALSHA")
    print(f"\nsteady key, 1000 requests/s for 4 s: {calls} Redis calls")
    assert calls <= 2 + 4 * 3  # still a call per lease, not per request
    assert limiter.metrics.decisions == {"read": [4000, 0]}


def test_a_lease_keeps_the_unexpired_tokens_of_the_last_and_renews_only_when_roomy() -> None:
    policy = Policy("read", 100_000, 1.0)
    lease = Lease([0, 0], 10.0)
    lease.roomy = True
    lease.refilled(
        Grant(100, 50_000, 0, 0), policy, wanted=100, sent=10.0, received=10.001, ttl=1.0,
        hold_seconds=0.05,
    )  # fmt: skip
    assert (lease.tokens, lease.expires, lease.low, lease.refresh_at) == (100, 11.0, 25, 10.75)
    lease.tokens = 20  # spent down to 20 while the next was asked for, ahead
    lease.refilled(
        Grant(90, 49_900, 0, 0), policy, wanted=90, sent=10.8, received=10.81, ttl=1.0,
        hold_seconds=0.05,
    )  # fmt: skip
    assert (lease.tokens, lease.expires) == (110, 11.8)
    # Tokens past their expiry are void; a small lease, or one near the limit, not renewed ahead.
    lease.roomy = False
    lease.refilled(
        Grant(15, 100, 0, 0), policy, wanted=15, sent=12.0, received=12.001, ttl=0.2,
        hold_seconds=0.05,
    )  # fmt: skip
    assert (lease.tokens, lease.low, lease.refresh_at) == (15, -1, math.inf)
    lease.roomy = True
    lease.refilled(
        Grant(3, 50_000, 0, 0), policy, wanted=3, sent=12.1, received=12.101, ttl=1.0,
        hold_seconds=0.05,
    )  # fmt: skip
    assert (lease.tokens, lease.low, lease.refresh_at) == (18, -1, math.inf)
    lease.refilled(
        Grant(4, 50_000, 0, 0), policy, wanted=4, sent=13.2, received=13.201, ttl=1.0,
        hold_seconds=0.05,
    )  # fmt: skip
    assert (lease.tokens, lease.low, lease.refresh_at) == (4, 1, 13.95)
