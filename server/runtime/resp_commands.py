"""A command connection of hotpath's own to one Redis server, for the catalog's tombstones.

A script call through coredis 6.9 passes its writer task, its reader task, anyio memory
streams and events and about five cancel scopes: about 864k client instructions an EVAL
(callgrind, decision 0015). Here a command is written to the socket from the caller, and its
reply, parsed in the protocol's ``data_received``, completes the caller's future: no task
wakes up but the caller.

What it keeps, because replies are matched to commands by their order alone:

- one future per command, answered in the order sent;
- a command cancelled or timed out (the call site's ``asyncio.timeout``), a reply with no
  command waiting, bytes that are not RESP, or the connection lost closes the connection and
  fails every command still waiting on it, so a reply that comes late is never taken for
  another command's;
- the next command connects again (bounded by the caller's timeout, as any command is);
  nothing here retries a command: the caller knows whether one may be sent again (the
  tombstones: ``server/catalog/cache_redis.py`` keeps them pending until one is answered);
- ``close()`` aborts the socket at once; no task is ever started.

The connection is made as coredis' client for the same ``REDIS_URL`` makes its own
(server/runtime/resp.py, as the subscription's reader). A Redis Cluster keeps coredis.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from server.runtime.resp import (
    Push,
    RespError,
    ServerAddress,
    command,
    hello,
    open_transport,
    parse,
)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._replies: deque[asyncio.Future[object]] = deque()
        self.failed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        at, size, replies = 0, len(buffer), self._replies
        try:
            while at < size:
                parsed = parse(buffer, at)
                if parsed is None:
                    break
                value, at = parsed
                if isinstance(value, Push):
                    continue  # unasked (nothing here subscribes or tracks): not a reply
                if not replies:
                    raise ConnectionError("Redis sent a reply no command waits for")
                reply = replies.popleft()
                if reply.done():  # cancelled, its caller not yet resumed to close
                    raise ConnectionError("Redis answered a cancelled command")
                if isinstance(value, RespError):
                    reply.set_exception(value)
                else:
                    reply.set_result(value)
        except Exception as exc:
            self.fail(exc)
            return
        self._buffer = buffer[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionError("Redis closed the command connection"))

    # commands

    def send(self, *args: str | bytes) -> asyncio.Future[object]:
        """Write the command now; its reply's future (``wait`` for it)."""
        if self.failed or self._transport is None:
            raise ConnectionError("the command connection is closed")
        reply: asyncio.Future[object] = self._loop.create_future()
        self._replies.append(reply)
        self._transport.write(command(*args))
        return reply

    async def wait(self, reply: asyncio.Future[object]) -> object:
        try:
            return await reply
        except asyncio.CancelledError:
            # Its reply may still come: nothing on this connection can be matched any more.
            self.fail(ConnectionError("a command was cancelled or timed out"))
            raise

    def fail(self, exc: BaseException) -> None:
        """Close the connection and fail every command waiting on it; the first cause stays."""
        if self.failed:
            return
        self.failed = True
        replies, self._replies = self._replies, deque()
        for reply in replies:
            if not reply.done():
                reply.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()


class RespCommands:
    """Commands on one connection to ``address``, made on the first command and again on the
    first one after a failure; ``close()`` for good."""

    def __init__(self, address: ServerAddress) -> None:
        self.address = address
        self._connection: _Connection | None = None
        self._opening: _Connection | None = None  # being connected: close() aborts it too
        self._connecting = asyncio.Lock()
        self._closed = False

    async def execute(self, *args: str | bytes) -> object:
        """The reply (RespError for an error reply); ConnectionError or the caller's timeout
        when there is none, in which case the command may or may not have run."""
        connection = self._connection
        if connection is None or connection.failed:
            connection, reply = await self._connect(args)
        else:
            reply = connection.send(*args)
        return await connection.wait(reply)

    async def _connect(
        self, args: tuple[str | bytes, ...]
    ) -> tuple[_Connection, asyncio.Future[object]]:
        """A connection (a new one unless a concurrent command made it) and ``args`` sent on
        it. On a new one the command goes right behind the handshake, before its replies: a
        Redis that stalls runs it the moment it reads it, as on a connection made earlier."""
        async with self._connecting:  # concurrent first commands share one connection
            if self._closed:
                raise ConnectionError("the command connection is closed")
            connection = self._connection
            if connection is not None and not connection.failed:
                return connection, connection.send(*args)
            connection = self._opening = _Connection()
            handshake: list[asyncio.Future[object]] = []
            reply: asyncio.Future[object] | None = None
            try:
                await open_transport(self.address, connection)
                handshake = [connection.send(*hello_args) for hello_args in hello(self.address)]
                reply = connection.send(*args)
                async with asyncio.timeout(self.address.timeout):
                    for answer in handshake:
                        await connection.wait(answer)
            except BaseException as exc:
                connection.fail(ConnectionError(f"connecting failed: {type(exc).__name__}"))
                answers: list[asyncio.Future[object] | None] = [*handshake, reply]
                for unread in answers:  # retrieved: the first error is the one raised
                    if unread is not None and unread.done() and not unread.cancelled():
                        unread.exception()
                raise
            finally:
                self._opening = None
            if self._closed:  # closed while connecting
                connection.fail(ConnectionError("the command connection is closed"))
                reply.exception()
                raise ConnectionError("the command connection is closed")
            self._connection = connection
            return connection, reply

    async def connect(self) -> None:
        """Make the connection now (a PING), so that the first tombstone need not."""
        await self.execute(b"PING")

    def close(self) -> None:
        self._closed = True
        for connection in (self._connection, self._opening):
            if connection is not None:
                connection.fail(ConnectionError("the command connection is closed"))
        self._connection = None
