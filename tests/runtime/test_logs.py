from __future__ import annotations

import datetime as dt
import fcntl
import io
import logging
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
import structlog

from server.runtime import logs
from server.runtime.logs import (
    PIPE_BYTES,
    LineBuffer,
    configure_logging,
    flush_logs,
    request_line_logger,
    timestamp,
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
        assert [line["message"] for line in lines] == ["quiet", "loud"]
        logger.info("later")
        flush_logs()
        raw.seek(0)
        assert raw.read().splitlines()[-1].startswith(b'{"@timestamp":"')


def test_lines_carry_level_time_and_bound_context_by_ecs_names() -> None:
    stream = io.BytesIO()
    logger = configure_logging("info", stream=stream)
    structlog.contextvars.bind_contextvars(**{"http.request.id": "r-1", "trace.id": "ab" * 16})
    try:
        logger.info("hello", user=7)
        logger.debug("hidden")
        logger.warning("failed", error="TimeoutError")
    finally:
        structlog.contextvars.clear_contextvars()
    line, failed = [orjson.loads(raw) for raw in stream.getvalue().splitlines()]
    assert list(line)[:3] == ["@timestamp", "log.level", "message"]  # ecs-logging's order
    assert (line["message"], line["log.level"], line["ecs.version"]) == ("hello", "info", "8.11.0")
    assert (line["http.request.id"], line["trace.id"], line["user"]) == ("r-1", "ab" * 16, 7)
    stamp = dt.datetime.fromisoformat(line["@timestamp"])
    assert len(line["@timestamp"]) == len("2026-12-07T03:00:00.000Z")  # to the ms, in UTC
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    # "error" would clash with ECS's error object: app code's error is the error's message.
    assert (failed["log.level"], failed["error.message"]) == ("warning", "TimeoutError")
    assert "error" not in failed


def test_an_exception_is_its_type_and_stack_trace() -> None:
    stream = io.BytesIO()
    logger = configure_logging("info", stream=stream)
    try:
        raise KeyError("nope")
    except KeyError:
        logger.exception("crashed")
    (line,) = [orjson.loads(raw) for raw in stream.getvalue().splitlines()]
    assert (line["message"], line["log.level"]) == ("crashed", "error")
    assert "KeyError: 'nope'" in line["error.stack_trace"]


def test_library_records_come_out_as_the_same_json_with_the_request_context() -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    structlog.contextvars.bind_contextvars(**{"http.request.id": "r-2"})
    try:
        logging.getLogger("asyncpg.pool").warning("connection %s lost", "#3")
        logging.getLogger("asyncpg.pool").info("below the level: not written")
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = [orjson.loads(raw) for raw in stream.getvalue().splitlines()]
    assert (line["message"], line["log.level"]) == ("connection #3 lost", "warning")
    assert (line["log.logger"], line["http.request.id"]) == ("asyncpg.pool", "r-2")
    assert line["ecs.version"] == "8.11.0"


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
    access.info(
        "http_request",
        method="GET",
        path="/v1/products/7",
        route="/v1/products/{product_id}",
        status=200,
        duration_ns=1_500_000,
        bytes=321,
        client_ip="10.0.0.7",
        user_agent=None,
        error=None,
        request_id="rid-1",
        trace_id="ab" * 16,
        span_id="cd" * 8,
    )
    flush_logs()
    first, second = (orjson.loads(line) for line in sink.getvalue().splitlines())
    assert set(first) - {"n"} == {"@timestamp", "log.level", "message", "ecs.version"}
    second.pop("@timestamp")
    assert second == {
        "log.level": "info",
        "message": "http_request",
        "http.request.method": "GET",
        "url.path": "/v1/products/7",
        "http.route": "/v1/products/{product_id}",
        "http.response.status_code": 200,
        "event.duration": 1_500_000,
        "http.response.body.bytes": 321,
        "client.ip": "10.0.0.7",
        "http.request.id": "rid-1",
        "trace.id": "ab" * 16,
        "span.id": "cd" * 8,
        "ecs.version": "8.11.0",
    }


_ACCESS_CALL: dict[str, object] = {
    "method": "GET",
    "path": '/v1/products/7"\\\u2028',
    "route": "/v1/products/{product_id}",
    "status": 200,
    "duration_ns": 41_234,
    "bytes": 312,
    "client_ip": "10.0.0.7",
    "user_agent": 'wrk \\ "quoted"',
    "error": None,
    "request_id": "rid-1",
    "trace_id": None,
    "span_id": None,
}


@pytest.mark.parametrize(
    "fields",
    [
        _ACCESS_CALL,
        {**_ACCESS_CALL, "user_agent": None},
        {**_ACCESS_CALL, "client_ip": None, "request_id": None},
        {**_ACCESS_CALL, "error": "TimeoutError"},
        {**_ACCESS_CALL, "trace_id": "ab" * 16, "span_id": "cd" * 8},
        {**_ACCESS_CALL, "span_id": "cd" * 8},  # no trace: no span, as before
        {**_ACCESS_CALL, "extra": 1},
        {k: v for k, v in _ACCESS_CALL.items() if k != "route"},
        {k: v for k, v in _ACCESS_CALL.items() if k != "user_agent"},
        {"status": 200},
        {"status": 200, "path": "/v1/products/1", "n": 3},
        {},
    ],
)
def test_the_access_lines_writer_renders_what_the_processor_renders(
    fields: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # RequestLines binds the access log's keywords as parameters and builds the common line
    # as one literal; the access log's call (all its keywords) must give the bytes
    # _access_json gives it, key order included (the clock stands still for both); any other
    # call the same fields (its keywords in ACCESS_FIELDS' order, then the others).
    monkeypatch.setattr(logs, "timestamp", lambda now_ns=None: "2026-12-07T16:00:00.123Z")
    sink = io.BytesIO()
    logs.RequestLines(sink, logging.INFO).info("http_request", **fields)
    expected = logs._access_json(None, "info", {**fields, "event": "http_request"}) + b"\n"
    if set(fields) == set(logs.ACCESS_FIELDS):
        assert sink.getvalue() == expected
    else:
        assert orjson.loads(sink.getvalue()) == orjson.loads(expected)
        assert sink.getvalue().count(b"\n") == 1
    line = orjson.loads(sink.getvalue())
    assert (line["message"], line["ecs.version"]) == ("http_request", "8.11.0")


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


def test_a_pipe_is_grown_so_a_briefly_slow_reader_does_not_block_the_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A full pipe blocks write(2), and with it the worker's event loop: Linux's default 64 KiB
    # is some 20 ms of access lines under load. Grown to PIPE_BYTES where the system allows it.
    ceiling = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    read_end, write_end = os.pipe()
    try:
        before = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        assert before < PIPE_BYTES
        LineBuffer(write_end)
        grown = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        # Beyond an unprivileged process' limit the pipe keeps its size, and logging works.
        assert grown == (PIPE_BYTES if ceiling >= PIPE_BYTES or os.geteuid() == 0 else before)
        # Never shrunk: a pipe made larger than PIPE_BYTES by whoever made it keeps its size.
        monkeypatch.setattr(logs, "PIPE_BYTES", before)
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, before * 2)
        LineBuffer(write_end)
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) == before * 2
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


def test_timestamps_are_iso_8601_utc_to_the_millisecond_across_seconds() -> None:
    assert timestamp(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123Z"
    assert timestamp(1_700_000_000_999_999_999) == "2023-11-14T22:13:20.999Z"
    assert timestamp(1_700_000_001_000_000_000) == "2023-11-14T22:13:21.000Z"
    assert timestamp(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000Z"  # and back
