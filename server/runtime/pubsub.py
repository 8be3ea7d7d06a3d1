"""Following a Redis pub/sub channel for as long as a task runs, through Redis outages, and
publishing on one. On a Redis Cluster both use sharded pub/sub (server/runtime/redis_client.py
says why)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import coredis
from coredis.patterns.pubsub import PubSub, ShardedPubSub
from structlog.typing import FilteringBoundLogger

from server.runtime.redis_client import RedisClient
from server.runtime.redis_link import RedisLink

# A dead subscription that got no RST (a network partition) is found by coredis' PING this soon.
KEEPALIVE_SECONDS = 5.0


def error_name(exc: BaseException) -> str:
    # coredis runs on anyio task groups: the real error arrives wrapped in exception groups.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__


async def follow_channel(
    redis: RedisLink,
    channel: str,
    *,
    on_message: Callable[[object], None],
    on_subscribed: Callable[[bool], None],
    logger: FilteringBoundLogger,
    event: str,
) -> None:
    """Deliver every message's data to ``on_message``; resubscribe after failures with a
    capped backoff. ``on_subscribed`` learns when the subscription is up or down, so callers
    can cover the gaps (messages sent while it was down are lost)."""
    failures = 0
    while True:
        client = redis.client
        if client is not None:
            try:
                async with _subscription(client, channel) as pubsub:
                    on_subscribed(True)
                    failures = 0
                    async for message in pubsub:
                        on_message(message["data"])
            except Exception as exc:
                log = logger.warning if failures == 0 else logger.debug
                log(f"{event}_subscription_failed", error=error_name(exc))
            finally:
                on_subscribed(False)
        failures += 1
        await asyncio.sleep(min(2.0, 0.25 * 2.0 ** min(failures, 4)))


def _subscription(client: RedisClient, channel: str) -> PubSub[str] | ShardedPubSub[str]:
    # retry_policy=None: coredis' default retries a lost connection forever, silently,
    # leaving the caller blind to an outage it should cover.
    if isinstance(client, coredis.RedisCluster):
        sharded: ShardedPubSub[str] = client.sharded_pubsub(
            channels=[channel],
            ignore_subscribe_messages=True,
            retry_policy=None,
            max_idle_seconds=KEEPALIVE_SECONDS,
        )
        return sharded
    return client.pubsub(
        channels=[channel],
        ignore_subscribe_messages=True,
        retry_policy=None,
        max_idle_seconds=KEEPALIVE_SECONDS,
    )


async def publish(client: RedisClient, channel: str, message: str) -> int:
    """Subscribers reached (on a cluster: those on the shard's node that took it)."""
    if isinstance(client, coredis.RedisCluster):
        reached: int = await client.spublish(channel, message)
        return reached
    return await client.publish(channel, message)
