"""The invalidation follower's gaps, message by message: a fake publish keeps what each
heartbeat sent, and the test delivers it (or not) as the subscription would."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from structlog.typing import FilteringBoundLogger

from server.catalog import cache_follower
from server.catalog.cache_follower import InvalidationFollower
from server.runtime.redis_link import RedisLink
from tests.fixtures.clock import Clock


class _Link:
    client = object()  # never called: publish is the fake's
    timeout = 0.05


class Channel:
    """What the follower published, and what it was told: gaps and invalidations."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, logger: FilteringBoundLogger) -> None:
        self.sent: list[str] = []
        self.gaps = 0
        self.invalidated: list[int] = []
        self.failing = False
        self.echo = False  # the subscription delivers each heartbeat before publish answers
        self.clock = Clock()
        self.follower = InvalidationFollower(
            cast(RedisLink, _Link()),
            logger,
            channel="products",
            clock=self.clock,
            on_invalidated=self.invalidated.append,
            on_gap=self._gap,
        )
        monkeypatch.setattr(cache_follower, "publish", self._publish)

    def _gap(self) -> None:
        self.gaps += 1

    async def _publish(self, client: object, channel: str, message: str) -> int:
        if self.failing:
            await asyncio.sleep(1)  # Redis stalled: the heartbeat's timeout ends the wait
        self.sent.append(message)
        if self.echo:
            self.follower._on_message(message)
        return 1

    async def beat(self) -> str:
        """One heartbeat sent; what it published (the last message)."""
        await self.follower.heartbeat()
        return self.sent[-1]

    def deliver(self, *messages: str) -> None:
        for message in messages:
            self.follower._on_message(message)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch, logger: FilteringBoundLogger) -> Channel:
    channel = Channel(monkeypatch, logger)
    channel.follower._on_subscribed(True)
    channel.gaps = 0  # the subscription coming up is one; the tests count the ones after
    return channel


async def test_heartbeats_heard_late_but_in_order_are_no_gap(channel: Channel) -> None:
    first = await channel.beat()
    channel.deliver(first)
    assert channel.follower.following
    # The process falls behind (its CPU saturated): the heartbeats it sends come back long
    # after, in order, behind the invalidations published before them.
    late = [await channel.beat() for _ in range(3)]
    channel.clock.now += 2.0
    assert channel.follower.overdue()
    channel.deliver(late[0], "7", late[1], "8", late[2])
    assert channel.gaps == 0
    assert channel.invalidated == [7, 8]
    assert channel.follower.overdue()  # they vouch for no more than when they were sent
    channel.deliver(await channel.beat())
    assert channel.follower.following  # a prompt one vouches again, and nothing was dropped
    assert channel.gaps == 0


async def test_a_heartbeat_redis_took_that_never_came_back_is_a_gap(channel: Channel) -> None:
    one, _two, three = [await channel.beat() for _ in range(3)]
    channel.deliver(one, three)  # the second lost on the way, the subscription still up
    assert channel.gaps == 1
    channel.deliver(await channel.beat())
    assert channel.gaps == 1  # reported once


async def test_a_heartbeat_redis_did_not_take_in_time_makes_the_next_one_heard_a_gap(
    channel: Channel,
) -> None:
    channel.deliver(await channel.beat())
    channel.failing = True
    await channel.follower.heartbeat()  # times out: an outage, others' writes may be pending
    channel.failing = False
    late = channel.sent[-1]  # Redis, back, ran it after all
    assert channel.gaps == 0
    channel.deliver(late, await channel.beat())
    assert channel.gaps == 1


async def test_a_heartbeat_heard_before_publish_answered_is_not_awaited(
    channel: Channel,
) -> None:
    channel.echo = True
    for _ in range(3):
        await channel.beat()
    assert channel.follower.following
    assert channel.gaps == 0


async def test_a_new_subscription_is_a_gap_and_awaits_nothing_of_the_old_one(
    channel: Channel,
) -> None:
    await channel.beat()  # taken, never heard: the subscription went down meanwhile
    channel.follower._on_subscribed(False)
    channel.follower._on_subscribed(True)
    assert channel.gaps == 2
    channel.deliver(await channel.beat())
    assert channel.gaps == 2
    assert channel.follower.following


async def test_other_processes_heartbeats_and_bad_messages_are_not_ours(
    channel: Channel,
) -> None:
    other = InvalidationFollower(
        cast(RedisLink, _Link()),
        channel.follower.logger,
        channel="products",
        clock=channel.clock,
        on_invalidated=print,
        on_gap=print,
    )
    channel.deliver(f"{other._beat_prefix}5 {channel.clock.now!r}", "not a product id")
    assert not channel.follower.following
    assert channel.gaps == 0
    assert channel.invalidated == []
