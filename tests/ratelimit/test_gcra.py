"""The GCRA lease script against the real Redis, and its Python twin.

Most tests hand the script its "now" (microseconds), so grants and retry-afters are checked
exactly; the ones about Redis' own clock and key expiry use TIME and allow for real time.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator

import coredis
import pytest
from structlog.typing import FilteringBoundLogger

from server.ratelimit.gcra import Grant, RedisGcra, step
from server.ratelimit.policy import Policy
from server.runtime.redis_link import open_redis
from tests.fixtures.databases import REDIS_URL

SECOND = 1_000_000
T0 = 1_000 * SECOND  # a virtual "now", far from Redis' real clock on purpose


@pytest.fixture
async def client(logger: FilteringBoundLogger) -> AsyncIterator[coredis.Redis[str]]:
    async with open_redis(REDIS_URL, timeout=0.5, logger=logger) as link:
        assert isinstance(link.client, coredis.Redis)  # one server here, not a cluster
        yield link.client


@pytest.fixture
async def key(client: coredis.Redis[str]) -> AsyncIterator[str]:
    namespace = f"hotpath:test:{secrets.token_hex(6)}"
    yield f"{namespace}:ratelimit:p:k"
    found = [name async for name in client.scan_iter(match=f"{namespace}:*")]
    if found:
        await client.delete(found)


@pytest.fixture
def gcra() -> RedisGcra:
    return RedisGcra()


# 10 per 10 s: one token a second, a bucket of 10.
TEN = Policy("ten", 10, 10.0)


async def test_grants_are_exact_and_report_what_headers_need(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    assert await gcra.take(client, key, TEN, 4, T0) == Grant(4, 6, 4 * SECOND, 0)
    assert await gcra.take(client, key, TEN, 6, T0) == Grant(6, 0, 10 * SECOND, SECOND)
    # Two and a half seconds later two tokens have dripped back, not three; the third is
    # half a second away.
    later = T0 + 2 * SECOND + SECOND // 2
    assert await gcra.take(client, key, TEN, 3, later) == Grant(2, 0, 9_500_000, 500_000)


async def test_a_partial_grant_when_fewer_are_left(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    assert (await gcra.take(client, key, TEN, 7, T0)).granted == 7
    grant = await gcra.take(client, key, TEN, 5, T0)
    assert grant == Grant(3, 0, 10 * SECOND, SECOND)
    assert (await gcra.take(client, key, TEN, 5, T0)) == Grant(0, 0, 10 * SECOND, SECOND)


async def test_retry_after_is_exactly_when_the_next_token_is_there(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    three = Policy("three", 3, 1.0)  # an interval of 333334 us: the limit never rounds up
    first = await gcra.take(client, key, three, 3, T0)
    assert first.granted == 3
    assert first.retry_us == three.interval_us == 333_334
    denied = await gcra.take(client, key, three, 1, T0 + 100_000)
    assert denied.granted == 0
    assert denied.retry_us == 233_334
    retry_at = T0 + 100_000 + denied.retry_us
    assert (await gcra.take(client, key, three, 1, retry_at - 1)) == Grant(0, 0, 666_669, 1)
    admitted = await gcra.take(client, key, three, 1, retry_at)
    assert admitted.granted == 1
    assert admitted.retry_us == three.interval_us  # and the next one is a full interval away


async def test_no_window_edge_burst(gcra: RedisGcra, client: coredis.Redis[str], key: str) -> None:
    """A fixed 10 s window would admit 10 at 9.999 s and 10 more at 10.001 s."""
    end_of_first = T0 + 9_999_000
    start_of_next = T0 + 10_001_000
    assert (await gcra.take(client, key, TEN, 10, end_of_first)).granted == 10
    assert (await gcra.take(client, key, TEN, 10, start_of_next)).granted == 0
    # What comes back is the drip, one per second after the burst, never a fresh quota.
    assert (await gcra.take(client, key, TEN, 10, end_of_first + SECOND)).granted == 1
    assert (await gcra.take(client, key, TEN, 10, end_of_first + 5 * SECOND)).granted == 4


async def test_any_span_admits_at_most_the_burst_plus_the_drip_and_python_agrees(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    policy = Policy("mixed", 50, 5.0, burst=8)  # 100 ms interval, bucket of 8
    rng = random.Random(7)
    now, tat = T0, 0
    admitted: list[tuple[int, int]] = []
    for _ in range(300):
        now += rng.choice((0, 1_000, 20_000, 99_999, 100_000, 350_000))
        wanted = rng.randint(1, 6)
        grant = await gcra.take(client, key, policy, wanted, now)
        tat, expected = step(tat, now, policy.interval_us, policy.capacity, wanted)
        assert grant == expected
        if grant.granted:
            admitted.append((now, grant.granted))
    assert sum(n for _, n in admitted) > 100  # the sequence did hit the limit and recover
    for i, (start, _) in enumerate(admitted):
        total = 0
        for moment, granted in admitted[i:]:
            total += granted
            assert total <= policy.capacity + (moment - start) // policy.interval_us


async def test_the_burst_defaults_to_the_limit_and_can_be_smaller(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    smooth = Policy("smooth", 10, 10.0, burst=2)
    assert (await gcra.take(client, key, smooth, 10, T0)) == Grant(2, 0, 2 * SECOND, SECOND)
    assert (await gcra.take(client, key + "2", TEN, 20, T0)).granted == 10


async def test_a_denial_writes_nothing_and_the_key_expires_when_full_again(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    assert (await gcra.take(client, key, TEN, 3, T0)).granted == 3
    stored = await client.get(key)
    assert stored == str(T0 + 3 * SECOND)
    ttl = await client.pttl(key)
    assert 2_900 < ttl <= 3_000  # the bucket is full again 3 s after "now"
    await gcra.take(client, key, TEN, 8, T0)  # 7 granted, moves the TAT
    await gcra.take(client, key, TEN, 1, T0)  # denied: no write, the TTL keeps running
    assert await client.get(key) == str(T0 + 10 * SECOND)

    # With Redis' own clock, an idle key vanishes once its bucket is full (real time).
    quick = Policy("quick", 1, 0.05)
    assert (await gcra.take(client, key, quick, 1)).granted == 1
    assert 0 < await client.pttl(key) <= 50
    for _ in range(100):
        if not await client.exists([key]):
            break
        await asyncio.sleep(0.01)
    assert not await client.exists([key])


async def test_redis_time_is_the_clock_without_an_override(
    gcra: RedisGcra, client: coredis.Redis[str], key: str
) -> None:
    async def redis_now() -> int:
        reply: list[int] = await client.eval("return redis.call('TIME')")  # type: ignore[assignment]
        return int(reply[0]) * SECOND + int(reply[1])

    before = await redis_now()
    grant = await gcra.take(client, key, TEN, 2)
    after = await redis_now()
    assert grant == Grant(2, 8, 2 * SECOND, 0)
    tat = int(await client.get(key) or 0)
    assert before + 2 * SECOND <= tat <= after + 2 * SECOND


def test_the_python_twin_matches_by_hand() -> None:
    interval, capacity = 100, 3
    tat, grant = step(0, 1_000, interval, capacity, 5)
    assert (tat, grant) == (1_300, Grant(3, 0, 300, 100))
    tat, grant = step(tat, 1_099, interval, capacity, 1)
    assert (tat, grant) == (1_300, Grant(0, 0, 201, 1))
    tat, grant = step(tat, 1_100, interval, capacity, 1)
    assert (tat, grant) == (1_400, Grant(1, 0, 300, 100))
    tat, grant = step(tat, 5_000, interval, capacity, 1)  # long idle: a full bucket again
    assert (tat, grant) == (5_100, Grant(1, 2, 100, 0))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("", 10, 1.0), "name"),
        (("has space", 10, 1.0), "name"),
        (('q"uote', 10, 1.0), "name"),
        (("p", 0, 1.0), "limit"),
        (("p", True, 1.0), "limit"),
        (("p", 10, 0), "window_seconds"),
        (("p", 10, float("inf")), "window_seconds"),
        (("p", 10, 1.0, 0), "burst"),
        (("p", 2_000_000, 1.0), "per second"),
    ],
)
def test_policies_are_checked_at_once(arguments: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(*arguments)  # type: ignore[arg-type]


def test_the_interval_is_exact_or_rounded_up() -> None:
    assert Policy("p", 10, 0.1).interval_us == 10_000  # not 10001 from 0.1's binary error
    assert Policy("p", 3, 1).interval_us == 333_334
    assert Policy("p", 100, 60).capacity == 100
    assert Policy("p", 100, 60, burst=5).capacity == 5
