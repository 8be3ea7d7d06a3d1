"""The open-model generator counts a request's latency from the moment it was due: a server
that stalls once is seen in every request that queued behind the stall, not in one sample
(which is what a closed loop like wrk reports)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from bench.suite.openloop import pooled, run_open_loop

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


class StallingServer:
    """HTTP/1.1 on loopback answering ``ok`` at once, except the first request (``stall``
    seconds late) and, when ``fail`` is set, every answer a 500."""

    def __init__(
        self, stall: float, *, fail: bool = False, on_request: Callable[[int], None] | None = None
    ) -> None:
        self.stall = stall
        self.fail = fail
        self.on_request = on_request  # called with each request's number, from the server
        self.port = 0
        self.answered = 0
        self.stalled = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            if not self.stalled:  # the very first request only, whatever its connection
                self.stalled = True
                await asyncio.sleep(self.stall)
            self.answered += 1
            if self.on_request is not None:
                self.on_request(self.answered)
            status = b"500 Internal Server Error" if self.fail else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    def _serve(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> StallingServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def stalling() -> Iterator[StallingServer]:
    with StallingServer(0.3) as server:
        yield server


def test_a_single_stall_shows_in_every_request_queued_behind_it(
    stalling: StallingServer,
) -> None:
    # One connection, 100 requests a second: 30 or so fall due while the first is stalled.
    found = run_open_loop(
        "127.0.0.1", stalling.port, [REQUEST], rate=100, seconds=1, max_connections=1
    )
    assert found.sent == 100
    assert found.errors == 0
    assert len(found.latencies_ms) == 100
    assert found.latencies_ms == sorted(found.latencies_ms)
    # A closed loop would report one slow request; counted from their due times, those that
    # waited behind it were slow too: well over a tenth of them took more than 100 ms.
    assert sum(latency > 100 for latency in found.latencies_ms) >= 20
    assert found.latencies_ms[-1] >= 250
    assert found.percentile(0.5) < found.percentile(0.99) <= found.latencies_ms[-1]


def test_more_connections_absorb_the_stall_and_errors_are_counted() -> None:
    with StallingServer(0.3, fail=True) as failing:
        found = run_open_loop(
            "127.0.0.1", failing.port, [REQUEST], rate=100, seconds=1, max_connections=64
        )
    assert found.sent == 100
    assert found.errors == 100  # every answer a 500
    # Other connections carried the requests due during the stall: only the first waited.
    assert sum(latency > 100 for latency in found.latencies_ms) <= 2


def test_the_generator_holds_only_requests_in_flight_and_its_heap_stays_out_of_gc() -> None:
    # A full collection of a heap that grows with every request sent stalls the generator,
    # and the stall is counted as the server's latency: so no finished task is kept, and the
    # heap from before the run is frozen out of every collection until the run ends.
    seen: dict[str, int] = {}

    def look(answered: int) -> None:
        if answered == 150:  # the server's thread, with the generator mid-run
            seen["tasks"] = sum(isinstance(o, asyncio.Task) for o in gc.get_objects())
            seen["frozen"] = gc.get_freeze_count()

    frozen_before = gc.get_freeze_count()
    with StallingServer(0, on_request=look) as server:
        found = run_open_loop(
            "127.0.0.1", server.port, [REQUEST], rate=200, seconds=1, max_connections=4
        )
    assert found.sent == 200
    assert found.errors == 0
    # 149 answered requests behind it; only those in flight (and the server's own) remain.
    assert seen["tasks"] < 30
    assert seen["frozen"] > frozen_before
    assert gc.get_freeze_count() == frozen_before


def test_requests_due_in_the_warm_up_go_out_but_are_not_counted(
    stalling: StallingServer,
) -> None:
    # The same stall as above, inside a half-second warm-up: the queue behind it has drained
    # by the time the counted second starts, and only that second's requests are counted.
    found = run_open_loop(
        "127.0.0.1",
        stalling.port,
        [REQUEST],
        rate=100,
        seconds=1,
        max_connections=1,
        warmup=0.5,
    )
    assert stalling.answered == 150
    assert found.sent == 100
    assert len(found.latencies_ms) == 100
    assert found.errors == 0
    assert sum(latency > 100 for latency in found.latencies_ms) <= 2


def test_a_failure_the_generator_does_not_expect_is_raised_not_lost(
    stalling: StallingServer,
) -> None:
    # A request that is not bytes makes the transport's write raise: as a bug in the bench,
    # it must end the run with its error, not vanish with the finished task.
    with pytest.raises(TypeError):
        run_open_loop(
            "127.0.0.1",
            stalling.port,
            cast(list[bytes], [REQUEST.decode()]),
            rate=20,
            seconds=0.2,
        )


def test_pooled_runs_are_one_run_of_all_their_requests(stalling: StallingServer) -> None:
    # The stall lands in the first run only: pooled, its slow requests are a share of both
    # runs' requests, so the pool's percentiles are the whole's, not either run's.
    first = run_open_loop("127.0.0.1", stalling.port, [REQUEST], rate=100, seconds=1)
    second = run_open_loop("127.0.0.1", stalling.port, [REQUEST], rate=100, seconds=1)
    both = pooled([first, second])
    assert (both.rate, both.seconds, both.sent, both.errors) == (100, 2, 200, 0)
    assert both.latencies_ms == sorted(first.latencies_ms + second.latencies_ms)
    assert both.send_lags_ms == sorted(first.send_lags_ms + second.send_lags_ms)
    assert len(both.send_lags_ms) == 200
    assert both.percentile(0.99) == both.latencies_ms[197]
    assert both.latencies_ms[-1] == first.latencies_ms[-1] >= 250
    with pytest.raises(ValueError, match="at the same rate"):
        pooled([first, dataclasses.replace(second, rate=50)])
    with pytest.raises(ValueError, match="at the same rate"):
        pooled([])
