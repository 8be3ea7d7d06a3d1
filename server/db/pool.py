"""A lean pool of asyncpg connections for request work.

asyncpg's own pool does, for every acquire and release: a holder and a proxy object, a timer
for the idle timeout, a reset coroutine, and ``asyncio.shield`` around the release, which is a
new Task per request. On a primary-key read that was about a fifth of the CPU the whole request
cost. Here an acquire with a connection idle is a list pop, a release a list append, and a
timer exists only while a caller actually waits.

- Idle connections are reused last-in first-out, so the busy few stay warm and the rest age
  out after ``max_idle`` seconds (down to ``min_size``).
- One that sat idle through a housekeeping round (``retire_idle()``, twice a second in the app)
  gets a round trip (``SELECT 1``) before it is handed out, within the caller's acquire
  timeout: a PostgreSQL that stopped answering meanwhile (paused, a host gone whose TCP
  connections stay open) is then found within the acquire timeout, not a statement's command
  timeout (docs/decisions/0009-stalled-postgres.md). Housekeeping sets those aside, so the
  fast path reads no clock; under load that is at most a round trip per connection a round.
- Callers that find nothing idle and the pool full wait first-in first-out; a released
  connection goes straight to the oldest waiter.
- A connection comes back usable or not at all: one that is closed, still inside a
  transaction, still running a statement, or given back by a holder that was cancelled or
  timed out mid-statement (``discard``, ``close_timed_out``), is closed and its slot freed
  at once (closed after asyncpg has had a statement still running cancelled in the server).
  asyncpg's pool instead runs a reset (``ROLLBACK`` if needed, then ``RESET ALL``,
  ``UNLISTEN *``, advisory unlocks) on every release: a round trip per request, the main
  reason this pool exists. So code must leave no session state behind
  (docs/decisions/0001-own-connection-pool.md).
- Connections are recycled as asyncpg's are: one past ``max_lifetime`` seconds (less up to a
  tenth, so those opened together do not all reconnect together) or that has run
  ``max_queries`` statements is closed when it comes back, and ``expire_connections()``
  replaces every one (after a failover, say). Idle ones past their lifetime are closed by
  ``retire_idle()``.
- Connections are ``PooledConnection``s (``server/db/connection.py``), each made once around
  its asyncpg connection, not a proxy per acquire: code must not keep one past its
  ``async with`` (request code never does; ``Database`` is the only caller).
- Idle connections past ``min_size`` are retired by ``retire_idle()``, which the app's
  housekeeping calls twice a second, so a replica whose traffic stops gives its connections
  back to PostgreSQL too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable

from server.db.connection import PooledConnection

Connect = Callable[[], Awaitable[PooledConnection]]
# Seconds a connection given back mid-statement has to get its statement cancelled and close.
_GRACE = 5.0


class PoolClosed(Exception):
    """The pool is closing or closed."""


class ConnectionPool:
    def __init__(
        self,
        connect: Connect,
        *,
        min_size: int,
        max_size: int,
        max_idle: float = 300.0,
        max_lifetime: float | None = 3600.0,
        max_queries: int | None = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"need 0 <= min_size <= max_size, 1 <= max_size: {min_size}, {max_size}"
            )
        self._connect = connect
        self.min_size = min_size
        self.max_size = max_size
        self.max_idle = max_idle
        self.max_lifetime = math.inf if max_lifetime is None else max_lifetime
        self.max_queries = math.inf if max_queries is None else max_queries
        self._clock = clock
        self._generation = 0  # expire_connections() moves it on, for connections then opening
        self._idle: list[tuple[float, PooledConnection]] = []  # (released at, connection)
        self._stale: list[tuple[float, PooledConnection]] = []  # idle through housekeeping
        self._waiters: collections.deque[asyncio.Future[PooledConnection | None]] = (
            collections.deque()
        )
        self._size = 0  # open or opening
        self._in_use: set[PooledConnection] = set()
        self._closing = False
        self.timeouts = 0  # acquires that gave up: the pool was too small or the database slow
        self._all_back = asyncio.Event()  # set once closing and nothing is in use
        self._closers: set[asyncio.Task[None]] = set()  # graceful closes under way

    @property
    def size(self) -> int:
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle) + len(self._stale)

    @property
    def pending(self) -> int:
        """Callers waiting for a connection."""
        return len(self._waiters)

    async def start(self) -> None:
        """Open ``min_size`` connections; if any fails, close the others and raise."""
        self._size += self.min_size
        opened = await asyncio.gather(
            *(self._connect() for _ in range(self.min_size)), return_exceptions=True
        )
        failures = [o for o in opened if isinstance(o, BaseException)]
        good = [o for o in opened if isinstance(o, PooledConnection)]
        if failures:
            self._size -= self.min_size
            for conn in good:
                conn.terminate()
            raise failures[0]
        now = self._clock()
        for conn in good:
            self._stamp(conn, now)
        self._idle.extend((now, conn) for conn in good)

    def try_acquire(self) -> PooledConnection | None:
        """A recently used idle connection at once, or None: the fast path, no coroutine and
        no timer."""
        idle = self._idle
        while idle:
            conn = idle.pop()[1]
            if not conn.raw.is_closed():
                self._in_use.add(conn)
                return conn
            self._size -= 1
        return None

    async def acquire(self, timeout: float) -> PooledConnection:
        """A connection within ``timeout`` seconds (TimeoutError otherwise): idle, newly
        opened while the pool has room, or handed over by a release."""
        try:
            return await self._acquire(timeout)
        except TimeoutError:
            self.timeouts += 1
            raise

    async def _acquire(self, timeout: float) -> PooledConnection:
        async with asyncio.timeout(timeout):
            while True:
                if self._closing:
                    raise PoolClosed("the connection pool is closed")
                conn = self.try_acquire()
                if conn is not None:
                    return conn
                if self._stale:
                    conn = await self._probed(self._stale.pop()[1])
                    if conn is not None:
                        return conn
                    continue  # it was broken, and is gone: try the next
                if self._size < self.max_size:
                    return await self._open()
                waiter: asyncio.Future[PooledConnection | None] = (
                    asyncio.get_running_loop().create_future()
                )
                self._waiters.append(waiter)
                try:
                    conn = await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                        handed = waiter.result()
                        if handed is not None:  # handed over as the wait ended: give it back
                            self.release(handed)
                        else:  # woken for a freed slot it will not use: pass the wake on
                            self._wake_one()
                    elif waiter in self._waiters:  # timed out or cancelled while waiting
                        self._waiters.remove(waiter)
                    raise
                if conn is not None:
                    return conn
                # None: a slot freed up (a connection was dropped); go round and open one.

    async def _probed(self, conn: PooledConnection) -> PooledConnection | None:
        """``conn``, once it has answered a round trip; None if it was broken (it is dropped).
        The caller's timeout ends the wait for an answer: the connection is dropped then too."""
        if conn.raw.is_closed():
            self._size -= 1
            return None
        self._in_use.add(conn)
        try:
            await conn.raw.execute("SELECT 1")
        except Exception:
            self.discard(conn)
            return None
        except BaseException:
            self.discard(conn)
            raise
        return conn

    async def _open(self) -> PooledConnection:
        self._size += 1
        generation = self._generation
        try:
            conn = await self._connect()
        except BaseException:
            self._size -= 1
            self._wake_one()
            raise
        if self._closing:  # the pool closed while this one was connecting
            conn.terminate()
            self._size -= 1
            raise PoolClosed("the connection pool is closed")
        self._stamp(conn, self._clock())
        if generation != self._generation:  # expire_connections() ran while it connected
            conn.expires_at = -math.inf
        self._in_use.add(conn)
        return conn

    def _stamp(self, conn: PooledConnection, now: float) -> None:
        conn.expires_at = now + self.max_lifetime * random.uniform(0.9, 1.0)

    def release(self, conn: PooledConnection) -> None:
        in_use = self._in_use
        if conn not in in_use:
            return  # released twice, or already terminated by close()
        in_use.remove(conn)
        now = self._clock()
        raw = conn.raw
        last = conn.last
        if last is not None and last.cr_frame is not None:
            # A statement still running, in a task its holder left behind.
            self._drop(conn, graceful=True)
            if self._closing and not self._in_use:
                self._all_back.set()
            return
        if (
            self._closing
            or raw.is_closed()
            or raw.is_in_transaction()
            or now >= conn.expires_at
            or conn.queries >= self.max_queries
        ):
            self._drop(conn)
            if self._closing and not self._in_use:
                self._all_back.set()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._in_use.add(conn)
                waiter.set_result(conn)
                return
        self._idle.append((now, conn))

    def retire_idle(self) -> int:
        """Housekeeping: close the idle connections past their lifetime, and those idle for
        more than ``max_idle`` seconds down to ``min_size``; set the rest aside, to be probed
        before their next use. How many were closed.

        Both idle lists run oldest (bottom) to newest: the LIFO stack only grows at its top,
        and the stale list takes the whole stack at each round."""
        now = self._clock()
        retired = 0
        for entries in (self._stale, self._idle):
            if any(now >= conn.expires_at for _, conn in entries):
                kept = []
                for entry in entries:
                    if now >= entry[1].expires_at:
                        self._drop(entry[1])
                        retired += 1
                    else:
                        kept.append(entry)
                entries[:] = kept
        stale = self._stale
        stale.extend(self._idle)
        self._idle.clear()
        cutoff = now - self.max_idle
        while stale and self._size > self.min_size and stale[0][0] < cutoff:
            self._drop(stale.pop(0)[1])
            retired += 1
        return retired

    def expire_connections(self) -> None:
        """Replace every connection, as after a failover: the idle ones are closed now, the
        ones in use (or being opened) when they come back. New ones open on demand."""
        self._generation += 1
        for conn in self._in_use:
            conn.expires_at = -math.inf
        idle, self._idle, self._stale = self._idle + self._stale, [], []
        for _, conn in idle:
            self._drop(conn)

    def discard(self, conn: PooledConnection) -> None:
        """Give back a connection that must not be reused: its holder was cancelled or timed
        out while a statement was in flight, so its state in the server (a BEGIN that completes
        after the cancel, say) is not what asyncpg last saw. Its slot is free at once."""
        if conn not in self._in_use:
            return
        self._in_use.remove(conn)
        self._drop(conn, graceful=True)
        if self._closing and not self._in_use:
            self._all_back.set()

    async def close_timed_out(self, conn: PooledConnection, timeout: float) -> None:
        """Take back a connection whose statement timed out (or that broke) and close it once
        asyncpg's cancel of that statement is acknowledged, so the statement has ended in the
        server; at most ``timeout`` seconds, then it is terminated. Its slot is free at once."""
        if conn not in self._in_use:
            return
        self._in_use.remove(conn)
        self._size -= 1
        self._wake_one()
        if self._closing and not self._in_use:
            self._all_back.set()
        await _close(conn, timeout)

    def _drop(self, conn: PooledConnection, *, graceful: bool = False) -> None:
        """Close ``conn`` and free its slot. ``graceful``: in the background, once asyncpg has
        had the statement still running (or timed out) cancelled in the server, which
        terminating it now would not do; at most ``_GRACE`` seconds."""
        raw = conn.raw
        if not raw.is_closed():
            if graceful:
                closing = asyncio.get_running_loop().create_task(_close(conn, _GRACE))
                self._closers.add(closing)
                closing.add_done_callback(self._closers.discard)
            else:
                raw.terminate()
        self._size -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self, timeout: float = 10.0) -> None:
        """Refuse new acquires, close idle connections, give the ones in use ``timeout``
        seconds to come back, then terminate what is left."""
        self._closing = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        idle = [conn for _, conn in self._stale + self._idle]
        self._idle, self._stale = [], []
        self._size -= len(idle)
        await asyncio.gather(*(_close(conn, timeout) for conn in idle))
        if self._in_use:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_back.wait()
        for conn in list(self._in_use):
            self._in_use.discard(conn)
            conn.terminate()
            self._size -= 1
        for closing in list(self._closers):
            closing.cancel()  # which terminates its connection
        await asyncio.gather(*self._closers, return_exceptions=True)


async def _close(conn: PooledConnection, timeout: float) -> None:
    try:
        await conn.close(timeout=timeout)
    except Exception:
        conn.terminate()
