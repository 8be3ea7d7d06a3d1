"""A subscription-only Redis reader for one server: SUBSCRIBE on a connection of its own, each
message handed to a callback from the event loop's read of the socket, and nothing else.

coredis' PubSub passes a received message through its connection's reader task, an anyio
memory stream, the PubSub's consumer task, a second memory stream and ``get_message``'s cancel
scope: about 546k instructions a message (callgrind, decision 0015). Every process receives
every write's invalidation, its own too, so that was paid once per write per process. Here a
message costs the RESP3 parse and the callback, in the protocol's ``data_received``; no task
wakes up. Used for one server only: a Redis Cluster keeps coredis' sharded pub/sub
(server/runtime/pubsub.py), which follows slots moving between shards.

The connection is made as coredis' client for the same ``REDIS_URL`` makes its own (its pool's
address, TLS context, credentials, database, client name and timeouts): HELLO 3 with AUTH,
SELECT and CLIENT SETNAME when the URL has them, then SUBSCRIBE. A
subscription silent for ``keepalive`` seconds is sent a PING; no answer within the client's
timeout fails it, so a stalled Redis or a partition that sends no RST is found as with
coredis' ``max_idle_seconds``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import coredis
from coredis.connection import TCPLocation, UnixDomainSocketLocation


class RespError(Exception):
    """Redis answered a command with an error (its text: never a credential)."""


@dataclass(frozen=True)
class ServerAddress:
    """Where and how coredis' client connects (one server); ``path`` for a Unix socket."""

    host: str = ""
    port: int = 0
    path: str | None = None
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    connect_timeout: float | None = None
    timeout: float | None = None

    @classmethod
    def of(cls, client: coredis.Redis[str]) -> ServerAddress:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        location = pool.location
        if isinstance(location, UnixDomainSocketLocation):
            host, port, path, tls = "", 0, location.path, None
        elif isinstance(location, TCPLocation):
            host, port, path, tls = location.host, location.port, None, kwargs.get("ssl_context")
        else:
            raise ValueError(f"no subscriber for a {type(location).__name__}")
        return cls(
            host=host,
            port=port,
            path=path,
            tls=tls,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=kwargs.get("db") or 0,
            client_name=kwargs.get("client_name"),
            connect_timeout=kwargs.get("connect_timeout"),
            timeout=kwargs.get("stream_timeout"),
        )


class _Push(list[object]):
    """A RESP3 push frame (``>``): what the server sends unasked, as opposed to a reply."""


_MESSAGE = b">3\r\n$7\r\nmessage\r\n"
_PING = b"*1\r\n$4\r\nPING\r\n"


def _parse(buffer: bytes, at: int) -> tuple[object, int] | None:
    """The RESP2/RESP3 value starting at ``at`` and where the next one starts; None while it is
    incomplete. Bulk strings stay bytes."""
    end = buffer.find(b"\r\n", at)
    if end < 0:
        return None
    kind, line, at = buffer[at], buffer[at + 1 : end], end + 2
    if kind in b"$=!":  # bulk string, verbatim string, bulk error
        size = int(line)
        if size < 0:
            return None, at  # RESP2's null
        if len(buffer) < at + size + 2:
            return None
        data = buffer[at : at + size]
        if kind == ord("="):
            data = data[4:]  # "txt:"
        elif kind == ord("!"):
            return RespError(data.decode(errors="replace")), at + size + 2
        return data, at + size + 2
    if kind in b"*>~%|":  # array, push, set, map, attribute
        count = int(line)
        if kind in b"%|":
            count *= 2
        items: list[object] = []
        for _ in range(max(count, 0)):
            parsed = _parse(buffer, at)
            if parsed is None:
                return None
            item, at = parsed
            items.append(item)
        if kind == ord("|"):  # attributes precede the value they describe: skip them
            return _parse(buffer, at)
        if kind == ord(">"):
            return _Push(items), at
        if kind == ord("%"):
            return dict(zip(items[::2], items[1::2], strict=True)), at
        return (items if count >= 0 else None), at
    if kind == ord("+"):
        return line.decode(errors="replace"), at
    if kind == ord("-"):
        return RespError(line.decode(errors="replace")), at
    if kind in b":(":
        return int(line), at
    if kind == ord("_"):
        return None, at
    if kind == ord(","):
        return float(line), at
    if kind == ord("#"):
        return line == b"t", at
    raise ConnectionError(f"not RESP: {bytes([kind])!r}")


def _command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


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
        self._transport.write(_command(*args))
        return await reply

    async def subscribe(self) -> None:
        assert self._transport is not None
        self._transport.write(_command(b"SUBSCRIBE", self._channel))
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
    loop = asyncio.get_running_loop()
    subscriber = _Subscriber(channel, on_message, on_subscribed)
    try:
        async with asyncio.timeout(address.connect_timeout):
            if address.path is not None:
                await loop.create_unix_connection(lambda: subscriber, address.path)
            else:
                await loop.create_connection(
                    lambda: subscriber,
                    address.host,
                    address.port,
                    ssl=address.tls,
                    server_hostname=address.host if address.tls else None,
                )
        async with asyncio.timeout(address.timeout):
            hello: list[str | bytes] = [b"HELLO", b"3"]
            if address.username or address.password:
                hello += [b"AUTH", address.username or "default", address.password or ""]
            await subscriber.request(*hello)
            if address.db:
                await subscriber.request(b"SELECT", str(address.db))
            if address.client_name is not None:
                await subscriber.request(b"CLIENT", b"SETNAME", address.client_name)
            await subscriber.subscribe()
        subscriber.keep_alive(keepalive, address.timeout or keepalive)
        await subscriber.closed
    finally:
        subscriber.close()
