"""A subscription-only Redis reader for one server: SUBSCRIBE on a connection of its own, each
message handed to a callback from the event loop's read of the socket, and nothing else.

coredis' PubSub passes a received message through its connection's reader task, an anyio
memory stream, the PubSub's consumer task, a second memory stream and ``get_message``'s cancel
scope: about 546k instructions a message (callgrind, decision 0015). Every process receives
every write's invalidation, its own too, so that was paid once per write per process. Here a
message costs the RESP3 parse and the callback, in the protocol's ``data_received``; no task
wakes up. Used for one server only: a Redis Cluster keeps coredis' sharded pub/sub
(server/runtime/pubsub.py), which follows slots moving between shards.

The connection is made as coredis' client for the same ``REDIS_URL`` makes its own
(server/runtime/resp.py: its pool's address, TLS context, credentials, database, client name
and timeouts; HELLO 3 with AUTH, SELECT and CLIENT SETNAME when the URL has them), then
SUBSCRIBE. A
subscription silent for ``keepalive`` seconds is sent a PING; no answer within the client's
timeout fails it, so a stalled Redis or a partition that sends no RST is found as with
coredis' ``max_idle_seconds``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn, cast

from server.runtime.resp import (
    Push,
    RespError,
    ServerAddress,
    command,
    hello,
    open_transport,
    parse,
)

__all__ = ["RespError", "ServerAddress", "listen"]


_MESSAGE = b">3\r\n$7\r\nmessage\r\n"
_PING = b"*1\r\n$4\r\nPING\r\n"
# The parser's names as this module had them (its tests read them from here).
_parse = parse
_Push = Push


class _Subscriber(asyncio.Protocol):
    def __init__(
        self,
        channel: str,
        on_message: Callable[[object], None],
        on_subscribed: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._channel = channel.encode()
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._replies: deque[asyncio.Future[object]] = deque()
        self._subscribed: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[NoReturn] = self._loop.create_future()
        self._last_read = self._loop.time()
        self._keepalive = 0.0
        self._timeout = 0.0
        self._pinged_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        buffer = self._buffer + data if self._buffer else data
        at, size = 0, len(buffer)
        try:
            while at < size:
                if buffer.startswith(_MESSAGE, at):  # the one frame that matters: fast
                    parsed = self._message(buffer, at + len(_MESSAGE))
                else:
                    parsed = self._other(buffer, at)
                if parsed < 0:
                    break
                at = parsed
        except Exception as exc:  # a callback's error too: the subscription fails, as coredis'
            self._fail(exc)
            return
        self._buffer = buffer[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the subscription's connection"))

    # frames

    def _message(self, buffer: bytes, at: int) -> int:
        parsed = _parse(buffer, at)  # the channel (only ours is subscribed)
        if parsed is None:
            return -1
        parsed = _parse(buffer, parsed[1])
        if parsed is None:
            return -1
        data, at = parsed
        self._on_message(data.decode(errors="replace") if isinstance(data, bytes) else data)
        return at

    def _other(self, buffer: bytes, at: int) -> int:
        parsed = _parse(buffer, at)
        if parsed is None:
            return -1
        value, at = parsed
        if isinstance(value, _Push):
            if value[:2] == [b"subscribe", self._channel] and not self._subscribed.done():
                self._subscribed.set_result(None)
                self._on_subscribed()
            elif value[:2] == [b"message", self._channel] and len(value) == 3:
                self._on_message(value[2].decode(errors="replace"))  # type: ignore[attr-defined]
        elif self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                if isinstance(value, RespError):
                    reply.set_exception(value)
                else:
                    reply.set_result(value)
        elif isinstance(value, RespError):
            raise value  # SUBSCRIBE refused (an ACL without the channel), or the PING
        # Else the keepalive's PONG: that it came is all (any read counts as life).
        return at

    # commands

    async def request(self, *args: str | bytes) -> object:
        assert self._transport is not None
        reply: asyncio.Future[object] = self._loop.create_future()
        self._replies.append(reply)
        self._transport.write(command(*args))
        return await reply

    async def subscribe(self) -> None:
        assert self._transport is not None
        self._transport.write(command(b"SUBSCRIBE", self._channel))
        await self._subscribed

    # keepalive

    def keep_alive(self, keepalive: float, timeout: float) -> None:
        self._keepalive, self._timeout = keepalive, timeout
        self._timer = self._loop.call_at(self._last_read + keepalive, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if self._pinged_at is not None:
            if self._last_read <= self._pinged_at:
                self._fail(TimeoutError("Redis did not answer the subscription's PING"))
                return
            self._pinged_at = None
        if now - self._last_read < self._keepalive:
            self._timer = self._loop.call_at(self._last_read + self._keepalive, self._check)
            return
        assert self._transport is not None
        self._pinged_at = now
        self._transport.write(_PING)
        self._timer = self._loop.call_at(now + self._timeout, self._check)

    # the end

    def _fail(self, exc: BaseException) -> None:
        if self._timer is not None:
            self._timer.cancel()
        waiters: list[asyncio.Future[Any]] = [*self._replies, self._subscribed, self.closed]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._replies.clear()
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail(ConnectionError("subscription closed"))
        for waiter in (self._subscribed, self.closed):
            if not waiter.cancelled():
                waiter.exception()  # retrieved: nobody else may await it now


async def listen(
    address: ServerAddress,
    channel: str,
    *,
    on_message: Callable[[object], None],
    on_subscribed: Callable[[], None],
    keepalive: float,
) -> NoReturn:
    """Subscribe to ``channel`` and deliver each message's data (a str) to ``on_message`` until
    the subscription fails, which raises (ConnectionError, TimeoutError, RespError); its
    socket is closed when this returns, cancelled or not. ``on_subscribed`` is called once
    Redis confirmed the subscription, before the first message is delivered."""
    subscriber = _Subscriber(channel, on_message, on_subscribed)
    try:
        await open_transport(address, subscriber)
        async with asyncio.timeout(address.timeout):
            for args in hello(address):
                await subscriber.request(*args)
            await subscriber.subscribe()
        subscriber.keep_alive(keepalive, address.timeout or keepalive)
        await subscriber.closed
    finally:
        subscriber.close()
