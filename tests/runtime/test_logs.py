from __future__ import annotations

import io
import os
import tempfile

import orjson
import structlog

from server.runtime.logs import configure_logging, flush_logs, request_line_logger


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
