"""structlog set-up: one JSON line per event, bytes straight to stdout.

structlog's native bound logger with an orjson renderer costs a few microseconds a line, about
half of stdlib JSON logging; the request id comes in through contextvars.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import stat
import sys
import time
from typing import Any, BinaryIO

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


def _timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # A float epoch is an order of magnitude cheaper than formatting ISO 8601 on every line.
    event["ts"] = time.time()
    return event


def _exceptions(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    # Only lines that carry exc_info pay for formatting it.
    if "exc_info" in event:
        return structlog.processors.format_exc_info(logger, name, event)
    return event


def _json(_: WrappedLogger, __: str, event: EventDict) -> bytes:
    return orjson.dumps(event, default=repr)


class LineBuffer:
    """Whole log lines gathered in memory and written to a file descriptor in few write(2)s.

    ``sys.stdout.buffer`` cannot be trusted to buffer: under ``PYTHONUNBUFFERED=1`` or ``-u``
    (which container images set, hotpath's Dockerfile included) it is the raw FileIO, and every
    log line was a write(2) of its own. Under granian a syscall on the event loop's thread also
    hands the GIL to the server's threads and back, so the access log cost about 46 us of CPU
    per request instead of a few (measured side by side in the production configuration).

    A chunk written is only ever whole lines, and to a pipe or socket (a container's stdout)
    at most PIPE_BUF bytes, which the kernel writes atomically: the lines of several worker
    processes sharing one stdout never interleave mid-line. A single longer line goes alone.
    """

    def __init__(self, fd: int, *, limit: int | None = None) -> None:
        self.fd = fd
        if limit is None:
            mode = os.fstat(fd).st_mode
            shared = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
            limit = select.PIPE_BUF if shared else 65536
        self.limit = limit
        self._lines: list[bytes] = []
        self._size = 0

    def write(self, line: bytes) -> int:
        if self._size + len(line) > self.limit:
            self.flush()
        self._lines.append(line)
        self._size += len(line)
        return len(line)

    def flush(self) -> None:
        if not self._lines:
            return
        data = memoryview(b"".join(self._lines))
        self._lines.clear()
        self._size = 0
        while data:
            data = data[os.write(self.fd, data) :]


class BufferedBytesLogger:
    """Lines go into the stream's buffer (a LineBuffer over stdout); warnings and errors flush
    it at once.

    A flush per line is a write(2) per request, and under granian each one costs far more
    than the in-process numbers suggest. The app flushes every half second (``flush_logs``),
    and at exit, so info lines are at most that late.
    """

    def __init__(self, file: BinaryIO | LineBuffer) -> None:
        self._write = file.write
        self._flush = file.flush

    def msg(self, message: bytes) -> None:
        self._write(message + b"\n")

    def urgent(self, message: bytes) -> None:
        self._write(message + b"\n")
        self._flush()

    debug = info = log = msg
    warn = warning = error = err = critical = exception = fatal = failure = urgent


def flush_logs() -> None:
    for handler in _STREAMS:
        if not getattr(handler, "closed", False):  # a caller's stream it has since closed
            handler.flush()


_STREAMS: list[BinaryIO | LineBuffer] = []
atexit.register(flush_logs)


def _stdout() -> BinaryIO | LineBuffer:
    try:
        return LineBuffer(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        # No file descriptor behind stdout (a test runner's capture): its own buffer it is.
        return sys.stdout.buffer


_LEVEL = [logging.INFO]


def _stamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event["level"] = "info"
    event["ts"] = time.time()
    return event


def request_line_logger() -> FilteringBoundLogger:
    """The access log's structlog logger: the same JSON line into the same buffered stream as
    ``configure_logging``'s, through a two-step processor chain (level and time, then orjson)
    instead of the full one. Measured in bench/micro: about 6 -> 3.5 us a line. No context
    variables are merged: the caller passes every field, the request id included."""
    target = _STREAMS[0] if _STREAMS else _stdout()
    logger: FilteringBoundLogger = structlog.wrap_logger(
        BufferedBytesLogger(target),
        processors=[_stamp, _json],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVEL[0]),
        cache_logger_on_first_use=True,
    ).bind()
    return logger


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> FilteringBoundLogger:
    flush_logs()  # lines still held for the stream being replaced
    target = stream or _stdout()
    _STREAMS[:] = [target]
    _LEVEL[0] = _LEVELS[level]
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
        _exceptions,
        _json,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_: BufferedBytesLogger(target),
        cache_logger_on_first_use=True,
    )
    # Library loggers (asyncpg, granian) go to stderr at warning and above.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # bind() resolves structlog's lazy proxy now; the proxy costs ~0.5 us on every call.
    logger: FilteringBoundLogger = structlog.get_logger("hotpath").bind()
    return logger
