"""Following a Redis pub/sub channel for as long as a task runs, through Redis outages, and
publishing on one. On a Redis Cluster both use sharded pub/sub (server/runtime/redis_client.py
says why), through coredis; on one server the subscription is
server/runtime/resp_subscriber.py's, a reader that costs a received message a tenth of coredis'
PubSub (decision 0015)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import coredis
from coredis.patterns.pubsub import ShardedPubSub
from structlog.typing import FilteringBoundLogger

from server.runtime.redis_client import RedisClient
from server.runtime.redis_link import RedisLink
from server.runtime.resp_subscriber import ServerAddress, listen

# A dead subscription that got no RST (a network partition) is found by a PING this soon (plus
# the client's timeout for its answer).
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

            def up() -> None:
                nonlocal failures
                failures = 0
                on_subscribed(True)

            try:
                if isinstance(client, coredis.RedisCluster):
                    async with _sharded_subscription(client, channel) as pubsub:
                        up()
                        async for message in pubsub:
                            on_message(message["data"])
                else:
                    address = ServerAddress.of(client)
                    await listen(
                        address,
                        channel,
                        on_message=on_message,
                        on_subscribed=up,
                        keepalive=KEEPALIVE_SECONDS,
                    )
            except Exception as exc:
                log = logger.warning if failures == 0 else logger.debug
                log(f"{event}_subscription_failed", error=error_name(exc))
            finally:
                on_subscribed(False)
        failures += 1
        await asyncio.sleep(min(2.0, 0.25 * 2.0 ** min(failures, 4)))


def _sharded_subscription(client: coredis.RedisCluster[str], channel: str) -> ShardedPubSub[str]:
    # retry_policy=None: coredis' default retries a lost connection forever, silently,
    # leaving the caller blind to an outage it should cover.
    sharded: ShardedPubSub[str] = client.sharded_pubsub(
        channels=[channel],
        ignore_subscribe_messages=True,
        retry_policy=None,
        max_idle_seconds=KEEPALIVE_SECONDS,
    )
    return sharded


async def publish(client: RedisClient, channel: str, message: str) -> int:
    """Subscribers reached (on a cluster: those on the shard's node that took it)."""
    if isinstance(client, coredis.RedisCluster):
        reached: int = await client.spublish(channel, message)
        return reached
    return await client.publish(channel, message)
