"""Bad input only a real server sees: headers past granian's limit, headers that come slowly
or never end, and bodies that never come or trickle, on `python -m server serve`.

granian answers the first two itself, before hotpath sees a request: an oversized header is
its bare 431 (no problem document is possible there), a header that is not complete within
--http1-header-read-timeout has its connection closed. A body is hotpath's to wait for: a
late one is a 408 application/problem+json with Connection: close, on every body route
(read from the OpenAPI document), within HOTPATH_BODY_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from server.commands.serve import GRANIAN_TIMEOUT_FLAGS
from tests.fixtures.bad_bodies import body_operations
from tests.fixtures.databases import REDIS_URL
from tests.fixtures.servers import running_servers

pytestmark = pytest.mark.slow

# The header deadline `serve` gives granian, in seconds.
HEADER_READ_TIMEOUT = (
    int(GRANIAN_TIMEOUT_FLAGS[GRANIAN_TIMEOUT_FLAGS.index("--http1-header-read-timeout") + 1])
    / 1000
)
# granian's HTTP/1 read buffer (--http1-buffer-size, which `serve` leaves at its default): a
# header block a few times its size is past any limit granian applies.
GRANIAN_BUFFER = 417_792
OVERSIZED = 4 * GRANIAN_BUFFER
BODY_TIMEOUT = 1.0  # HOTPATH_BODY_TIMEOUT for the server under test
SLACK = 2.0  # a loaded two-core box


@pytest.fixture(scope="module")
def server(migrated_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    env = {"HOTPATH_BODY_TIMEOUT": str(BODY_TIMEOUT), "HOTPATH_BODY_MAX_TIMEOUT": "3"}
    data_dir = tmp_path_factory.mktemp("served")
    with running_servers(
        1, database_url=migrated_db, redis_url=REDIS_URL, data_dir=data_dir, extra_env=env
    ) as (base,):
        yield base, int(base.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Exchange:
    answer: bytes  # everything the server sent
    seconds: float  # until it closed the connection
    reset: bool  # it ended in an error: whatever was sent and not yet read is lost

    @property
    def status(self) -> int | None:
        line = self.answer.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/") else None


async def exchange(port: int, chunks: list[bytes], gap: float = 0.0) -> Exchange:
    """Send ``chunks`` (``gap`` seconds apart) while reading, until the server closes.
    Reading goes on while sending, and sending stops once an answer has come: a server that
    closes with bytes of ours unread resets the connection, and a reset drops what was
    received and not yet read."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received: list[bytes] = []
    reset = False

    async def read_all() -> None:
        nonlocal reset
        try:
            while chunk := await reader.read(65536):
                received.append(chunk)
        except ConnectionError:  # reset, or a broken pipe reported on the read side
            reset = True

    reading = asyncio.create_task(read_all())
    try:
        for n, chunk in enumerate(chunks):
            if n and gap:
                await asyncio.wait([reading], timeout=gap)
            if reading.done() or received:
                break
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                break
        await asyncio.wait_for(reading, HEADER_READ_TIMEOUT * 3)
        return Exchange(b"".join(received), time.monotonic() - started, reset)
    finally:
        reading.cancel()
        writer.close()


def test_an_oversized_header_is_a_431_and_the_server_keeps_serving(
    server: tuple[str, int],
) -> None:
    base, port = server

    async def both() -> list[Exchange]:
        # In 64 KiB pieces, as a client's socket sends it: the server reads along and answers
        # once it has had too much, while the rest is still unsent.
        big = [b"X-Big: "] + [b"a" * 65536] * (OVERSIZED // 65536) + [b"\r\n\r\n"]
        get = b"GET /v1/products HTTP/1.1\r\nHost: t\r\n"
        post = (
            b"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n"
        )
        many = [b"GET /livez HTTP/1.1\r\nHost: t\r\n"] + [b"X-Many: v\r\n"] * 500 + [b"\r\n"]
        return list(
            await asyncio.gather(
                exchange(port, [get, *big]),
                exchange(port, [post, *big[:-1], b"\r\n\r\n{}"]),
                exchange(port, many),
            )
        )

    huge_get, huge_post, many = asyncio.run(both())
    # granian refuses both before hotpath sees them: with its 431, or, when it closes with
    # the rest of the header unread, with a reset that may overtake the 431 on a busy box.
    for refused in (huge_get, huge_post):
        assert refused.status == 431 or (refused.answer == b"" and refused.reset), refused
    assert many.status == 431, many
    assert httpx.get(base + "/livez").status_code == 200


def test_headers_that_never_end_are_cut_off_by_the_header_deadline(
    server: tuple[str, int],
) -> None:
    base, port = server
    start = b"GET /v1/products HTTP/1.1\r\nHost: t\r\n"

    async def slow_clients() -> list[Exchange]:
        return list(
            await asyncio.gather(
                exchange(port, [start]),  # and then nothing
                exchange(port, [start] + [b"X-Drip: 1\r\n"] * 60, gap=0.5),  # a header a 0.5 s
                exchange(port, [b"G", b"E", b"T", b" ", b"/"] * 12, gap=0.5),  # a byte a 0.5 s
            )
        )

    for cut in asyncio.run(slow_clients()):
        # Closed without an answer (or with a 4xx): never a request handed to hotpath.
        assert cut.answer == b"" or 400 <= (cut.status or 0) < 500, cut
        assert HEADER_READ_TIMEOUT - 0.5 <= cut.seconds <= HEADER_READ_TIMEOUT + SLACK, cut
    assert httpx.get(base + "/livez").status_code == 200


def test_a_body_that_never_comes_or_trickles_is_a_408_problem_on_every_body_route(
    server: tuple[str, int],
) -> None:
    base, port = server
    operations = body_operations()

    def head(method: str, path: str, length: int) -> bytes:
        path = path.replace("{product_id}", "1").replace("{user_id}", "1")
        path = path.replace("{name}", "customer")
        return (
            f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f'Content-Length: {length}\r\nIdempotency-Key: k\r\nIf-Match: "x"\r\n\r\n'
        ).encode()

    async def late_bodies() -> list[Exchange]:
        silent = [exchange(port, [head(op.method, op.path, 300)]) for op in operations]
        # 20 bytes a second: far below the 1 KiB a second that would extend the deadline.
        trickling = [
            exchange(port, [head(op.method, op.path, 300)] + [b" " * 10] * 30, gap=0.5)
            for op in operations
        ]
        # Half a body, then silence.
        halves = [exchange(port, [head(op.method, op.path, 300) + b'{"a": 1']) for op in operations]
        return await asyncio.gather(*silent, *trickling, *halves)

    answers = asyncio.run(late_bodies())
    assert len(answers) == 3 * len(operations)
    for late in answers:
        head_part, _, body = late.answer.partition(b"\r\n\r\n")
        assert late.status == 408, late
        assert b"content-type: application/problem+json" in head_part.lower()
        assert b"connection: close" in head_part.lower()
        assert b"urn:hotpath:problem:request-timeout" in body
        assert BODY_TIMEOUT - 0.2 <= late.seconds <= BODY_TIMEOUT + SLACK, late
    assert httpx.get(base + "/livez").status_code == 200
