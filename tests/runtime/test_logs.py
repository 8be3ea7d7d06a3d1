from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
import structlog

from server.runtime.logs import (
    LineBuffer,
    configure_logging,
    flush_logs,
    request_line_logger,
)


def test_info_lines_wait_for_the_flush_and_warnings_do_not() -> None:
    with tempfile.TemporaryFile() as raw, os.fdopen(os.dup(raw.fileno()), "wb") as stream:
        logger = configure_logging("info", stream=stream)  # a real buffered file, like stdout
        logger.info("quiet", n=1)
        raw.seek(0)
        assert raw.read() == b""
        logger.warning("loud", n=2)
        raw.seek(0)
        lines = [orjson.loads(line) for line in raw.read().splitlines()]
        assert [line["event"] for line in lines] == ["quiet", "loud"]
        logger.info("later")
        flush_logs()
        raw.seek(0)
        assert raw.read().splitlines()[-1].startswith(b'{"event":"later"')


def test_lines_carry_level_time_and_bound_context() -> None:
    stream = io.BytesIO()
    logger = configure_logging("info", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        logger.info("hello", user=7)
        logger.debug("hidden")
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = [orjson.loads(raw) for raw in stream.getvalue().splitlines()]
    assert line["event"] == "hello"
    assert line["level"] == "info"
    assert line["request_id"] == "r-1"
    assert line["user"] == 7
    assert isinstance(line["ts"], float)


def test_the_access_log_writes_the_same_line_shape_at_the_configured_level() -> None:
    quiet = io.BytesIO()
    configure_logging("warning", stream=quiet)
    request_line_logger().info("http_request", status=200)
    flush_logs()
    assert quiet.getvalue() == b""

    sink = io.BytesIO()
    general = configure_logging("info", stream=sink)
    access = request_line_logger()
    general.info("something", n=1)
    access.info("http_request", status=200, request_id="rid-1")
    flush_logs()
    first, second = (orjson.loads(line) for line in sink.getvalue().splitlines())
    assert set(first) - {"n"} == set(second) - {"status", "request_id"}  # event, level, ts
    assert (second["event"], second["level"], second["request_id"]) == (
        "http_request",
        "info",
        "rid-1",
    )
    assert isinstance(second["ts"], float)


def test_a_line_buffer_writes_whole_lines_in_chunks_no_longer_than_its_limit() -> None:
    read_end, write_end = os.pipe()
    try:
        buffer = LineBuffer(write_end)
        assert buffer.limit == select.PIPE_BUF  # a pipe, as a container's stdout
        lines = [orjson.dumps({"n": n, "pad": "x" * (n % 300)}) + b"\n" for n in range(200)]
        chunks: list[bytes] = []
        real_write = os.write

        def recording_write(fd: int, data: bytes | memoryview) -> int:
            chunks.append(bytes(data))
            return real_write(fd, data)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "write", recording_write)
            for line in lines:
                buffer.write(line)
            buffer.flush()
        assert all(len(chunk) <= select.PIPE_BUF and chunk.endswith(b"\n") for chunk in chunks)
        assert b"".join(chunks) == b"".join(lines)
        assert len(chunks) <= sum(map(len, lines)) // (select.PIPE_BUF // 2) + 1
        received = b""
        while len(received) < len(b"".join(lines)):
            received += os.read(read_end, 65536)
        assert received == b"".join(lines)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_line_longer_than_the_limit_goes_alone() -> None:
    with tempfile.TemporaryFile() as raw:
        buffer = LineBuffer(raw.fileno(), limit=100)
        buffer.write(b"a" * 50 + b"\n")
        buffer.write(b"b" * 300 + b"\n")
        buffer.flush()
        raw.seek(0)
        assert raw.read() == b"a" * 50 + b"\n" + b"b" * 300 + b"\n"


LOG_THOUSAND_LINES = """
import sys
from server.runtime.logs import (
    LineBuffer,
    configure_logging,
    flush_logs,
    request_line_logger,
)

def writes():
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("syscw:")).split()[1])

configure_logging("info")
access = request_line_logger()
before = writes()
for n in range(1000):
    access.info("http_request", status=200, path="/v1/products/1", n=n)
flush_logs()
after = writes()
print(after - before, file=sys.stderr)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="Linux /proc counts syscalls")
@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_stdout_lines_are_batched_even_when_python_runs_unbuffered(unbuffered: str) -> None:
    # PYTHONUNBUFFERED=1 (the Dockerfile sets it) makes sys.stdout.buffer the raw FileIO:
    # relying on it, every access line was a write(2) of its own.
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    done = subprocess.run(
        [sys.executable, "-c", LOG_THOUSAND_LINES],
        env=env,
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = done.stdout.splitlines()
    assert [orjson.loads(line)["n"] for line in lines] == list(range(1000))
    # About 110 bytes a line into a pipe: 4 KiB chunks are some 30 writes, not 1000.
    assert int(done.stderr) <= 1000 * 120 // (select.PIPE_BUF // 2)
