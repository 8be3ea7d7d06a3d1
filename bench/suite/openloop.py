"""An open-model load generator: requests sent on a fixed schedule, whether or not the server
keeps up, each one's latency counted from the moment it was due.

wrk is closed-loop: a connection waits for its answer before it sends again, so a server that
stalls is simply offered less load and the stall hides in one slow sample ("coordinated
omission"). Here request ``i`` is due at ``start + i / rate``; if no connection is free at that
moment it waits for one (a new one is opened while fewer than ``max_connections`` exist), and
that wait is part of its latency, as it would be for a real client. Artillery is an open model
too, but on this box it offers at most a few hundred requests a second (decision 0013), far
below half of the warm read's peak; this loop, on uvloop with one ``asyncio.Protocol`` per
connection and pre-built requests, keeps up with thousands.

Answers are parsed just enough to find their end (``Content-Length`` bodies; hotpath sends no
chunked answers to these requests); a status of 400 or more, or a dropped connection, is an
error.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import uvloop


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float  # offered requests a second
    seconds: float
    sent: int  # after the warm-up
    errors: int
    latencies_ms: list[float]  # sorted, one per answered request
    # How late the generator itself sent (the 99th percentile, ms): large, and the latencies
    # above measure the generator's backlog as much as the server's.
    send_lag_p99_ms: float
    send_lags_ms: list[float]  # sorted, one per counted request sent

    def percentile(self, share: float) -> float:
        """The latency below which ``share`` (0.5, 0.99, 0.999) of the answers fall."""
        if not self.latencies_ms:
            return float("nan")
        index = min(len(self.latencies_ms) - 1, max(0, round(share * len(self.latencies_ms)) - 1))
        return self.latencies_ms[index]


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        marker = head.find(b"content-length:")
        length = 0
        if marker >= 0:
            line_end = head.find(b"\r\n", marker)
            length = int(head[marker + 15 : line_end if line_end >= 0 else None])
        total = end + 4 + length
        if len(buffer) < total:
            return
        status = int(head[9:12])
        del buffer[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def exchange(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def _run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    max_connections: int,
    warmup: float,
) -> OpenLoopResult:
    loop = asyncio.get_running_loop()
    # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
    clock = time.perf_counter
    idle: list[_Connection] = []
    waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
    opened = 0
    latencies: list[float] = []
    errors = 0

    def give_back(conn: _Connection | None) -> None:
        """A connection (None: a slot, its connection lost) to the oldest waiter, or idle."""
        nonlocal opened
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            opened -= 1
        else:
            idle.append(conn)

    async def connection() -> _Connection:
        nonlocal opened
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            opened -= 1
        handed: _Connection | None = None
        if opened >= max_connections:
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            waiting.append(waiter)
            handed = await waiter
            if handed is not None and not handed.closed:
                return handed
        else:
            opened += 1
        # A slot of our own: open a connection in it (given back as None if that fails).
        try:
            _, conn = await loop.create_connection(_Connection, host, port)
        except OSError:
            give_back(None)
            raise
        return conn

    async def one(request: bytes, due: float, counted: bool) -> None:
        nonlocal errors
        try:
            conn = await connection()
        except OSError:
            errors += 1
            return
        try:
            status = await conn.exchange(request)
        except ConnectionError:
            errors += 1
            give_back(None)
            return
        if counted:
            latencies.append((clock() - due) * 1000)
        if status >= 400:
            errors += 1
        give_back(conn)

    # The warm-up's requests go out on the same schedule, but only those due after it count:
    # its first moments open the connections (one per request due until the first answers).
    skipped = int(rate * warmup)
    total = skipped + int(rate * seconds)
    pick = itertools.cycle(requests)
    # Only the requests in flight are held: a finished task is dropped at once (see _frozen).
    in_flight: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []  # what one() does not expect: raised once all are done

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        if not task.cancelled() and (failure := task.exception()) is not None:
            failures.append(failure)

    lags = []
    start = clock() + 0.05
    index = 0
    while index < total:
        # Everything due by now goes out at once: one wake-up per batch, not per request.
        now = clock()
        while index < total and (due := start + index / rate) <= now:
            if index >= skipped:
                lags.append((now - due) * 1000)
            task = asyncio.create_task(one(next(pick), due, index >= skipped))
            in_flight.add(task)
            task.add_done_callback(finished)
            index += 1
        if index < total:
            await asyncio.sleep(max(0.0, start + index / rate - clock()))
    while in_flight:
        await asyncio.wait(in_flight)
    if failures:
        raise failures[0]
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    latencies.sort()
    lags.sort()
    return OpenLoopResult(rate, seconds, total - skipped, errors, latencies, _p99(lags), lags)


def _p99(lags: list[float]) -> float:
    return lags[min(len(lags) - 1, round(0.99 * len(lags)))] if lags else 0.0


def pooled(runs: Sequence[OpenLoopResult]) -> OpenLoopResult:
    """Several runs at one rate taken as one: their requests, errors, latencies and send lags
    together (the percentiles of the whole, not a mean of each run's)."""
    if not runs or len({run.rate for run in runs}) != 1:
        raise ValueError("pooled() takes one or more runs at the same rate")
    latencies = sorted(itertools.chain.from_iterable(run.latencies_ms for run in runs))
    lags = sorted(itertools.chain.from_iterable(run.send_lags_ms for run in runs))
    return OpenLoopResult(
        runs[0].rate,
        sum(run.seconds for run in runs),
        sum(run.sent for run in runs),
        sum(run.errors for run in runs),
        latencies,
        _p99(lags),
        lags,
    )


def run_open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    max_connections: int = 256,
    warmup: float = 0.0,
) -> OpenLoopResult:
    """Offer ``rate`` requests a second for ``warmup`` and then ``seconds``, cycling through
    ``requests`` (whole HTTP/1.1 requests with keep-alive), and collect the latency of every
    request due after the warm-up (errors are counted throughout)."""
    with _frozen():
        return uvloop.run(_run(host, port, requests, rate, seconds, max_connections, warmup))


@contextmanager
def _frozen() -> Iterator[None]:
    """The caller's heap (the bench's imports, servers, results) kept out of the garbage
    collector while the generator runs, and given back after.

    A full collection walks every tracked object, and a generator stalled in one sends nothing
    and reads nothing: each request due meanwhile, and each answer waiting, is late by the
    pause. Measured (2026-12-07, hotpath's warm read at 9,400 requests a second for 10 s, two
    interleaved rounds): with every task kept to the end and nothing frozen, the generator ran
    six full collections a run, up to 140-420 ms each; its send lag p99 was 63-68 ms and the
    latency p99 100-130 ms. Without either, no full collection, send lag p99 2-3.5 ms,
    latency p99 21-24 ms."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
