"""structlog set-up: one JSON line per event, bytes straight to stdout.

structlog's native bound logger with an orjson renderer costs a few microseconds a line, about
half of stdlib JSON logging; the request id (and a trace's ids) come in through contextvars.

Field names are Elastic Common Schema's (docs/decisions/0012-ecs-log-fields.md): ``@timestamp``,
``log.level``, ``message`` (the event's name), ``ecs.version`` on every line; the access log's
fields map to ECS's ``http.*``, ``url.*``, ``client.*`` names. Other libraries' lines (asyncpg,
granian) go through ``EcsFormatter`` into the same stream, as the same JSON.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
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
ECS_VERSION = "8.11.0"
# What structlog's method names mean as levels (structlog.processors.add_log_level's mapping).
_METHOD_LEVELS = {"warn": "warning", "exception": "error", "fatal": "critical"}
# The access log's keywords (short, as keywords cost less than **{...}) and their ECS names.
ACCESS_FIELDS = {
    "method": "http.request.method",
    "path": "url.path",
    "route": "http.route",  # not in ECS: OpenTelemetry's name, which ECS is converging on
    "status": "http.response.status_code",
    "duration_ns": "event.duration",
    "bytes": "http.response.body.bytes",
    "client_ip": "client.ip",
    "user_agent": "user_agent.original",
    "error": "error.type",
    "request_id": "http.request.id",
    "trace_id": "trace.id",
    "span_id": "span.id",
}
# Names app code passes that would clash with an ECS object of the same name.
_APP_FIELDS = {"error": "error.message", "exception": "error.stack_trace"}


# ".000Z" to ".999Z": a line's milliseconds are looked up, not formatted.
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))


# The second last formatted, as one tuple replaced whole (a line written from another thread,
# a library's, never sees one second's start with another's text): its first and its next
# second's first nanosecond, and its "YYYY-MM-DDTHH:MM:SS".
_SECOND: list[tuple[int, int, str]] = [(0, 0, "")]


def timestamp(now_ns: int | None = None) -> str:
    """``@timestamp``: ISO 8601 in UTC to the millisecond. strftime runs once a second; the rest
    is a range check, a lookup and a concatenation (time.time_ns: half the cost of time.time's
    float; a float epoch was cheaper still, but no schema's). Within the second, the
    nanoseconds since its start fit one machine digit, so their division is the interpreter's
    fast one, not the long division of the whole epoch."""
    now = time.time_ns() if now_ns is None else now_ns
    start, end, prefix = _SECOND[0]
    if not start <= now < end:
        second = now // 1_000_000_000
        start = second * 1_000_000_000
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SECOND[0] = (start, start + 1_000_000_000, prefix)
    return prefix + _MILLIS[(now - start) // 1_000_000]


def _exceptions(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    # Only lines that carry exc_info pay for formatting it.
    if "exc_info" in event:
        return structlog.processors.format_exc_info(logger, name, event)
    return event


def _ecs(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
    line = {
        "@timestamp": timestamp(),
        "log.level": _METHOD_LEVELS.get(method, method),
        "message": event.pop("event", None),
    }
    for key, value in event.items():
        line[_APP_FIELDS.get(key, key)] = value
    line["ecs.version"] = ECS_VERSION
    return line


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

    Why not larger chunks: 64 KiB ones (16 times fewer writes) measured about 2.5 µs less
    server CPU per /livez request, of some 45 (make bench-attribution, interleaved, 2026-12-07).
    But a write beyond PIPE_BUF is split whenever the pipe is full (a slow log reader), and
    another writer's line then lands inside it: a second worker's, or with one worker the
    lines granian's main process and serve's parent write (``serving``, ``draining``). The
    share of ``flush`` in a profile (4-7% in make bench's, 43% of the worker's Python samples in a
    py-spy run of ping at 500 Hz) is mostly wall time in write(2), waking the pipe's reader and
    waiting for the GIL back, not CPU.

    A pipe is grown to ``PIPE_BYTES`` (Linux's default ceiling for unprivileged processes): a
    write into a full pipe blocks the event loop until the reader catches up, and Linux's 64 KiB
    default holds about 20 ms of access lines at 9,000 requests a second, less than a busy
    node may keep a log reader off the CPU (see ``_grow_pipe``).
    """

    def __init__(self, fd: int, *, limit: int | None = None) -> None:
        self.fd = fd
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            _grow_pipe(fd)
        if limit is None:
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


PIPE_BYTES = 1 << 20


def _grow_pipe(fd: int) -> None:
    """Give the pipe ``PIPE_BYTES`` of buffer where the system allows it (else it keeps its size).

    Measured (2026-12-07, the warm read offered at 9,400 requests a second by the open-model
    generator, a sampler on the worker's event loop, the box shared with a CI run): with the
    64 KiB pipe, the loop's stalls were mostly in ``flush``'s write(2) and the latency p99 was
    6.8-39 ms in three interleaved rounds; with 1 MiB, 6.5-8.5 ms, and a stall in write(2)
    rare. Writes stay PIPE_BUF-sized and atomic: the size of the pipe does not change that."""
    grow = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if grow is None:
        return
    with contextlib.suppress(OSError):  # EPERM: above the system's or the user's limit
        if fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) < PIPE_BYTES:  # never shrunk
            fcntl.fcntl(fd, grow, PIPE_BYTES)


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


def _access_json(_: WrappedLogger, __: str, event: EventDict) -> bytes:
    """The access log's whole chain in one processor: the line with its ECS names, then orjson.
    A chain of two (rename, then render) cost a call more per line."""
    line = _access_line(event) if len(event) == _ACCESS_ARITY else None
    if line is None:
        line = _named_line(event)
    return orjson.dumps(line, default=repr)


_ACCESS_ARITY = len(ACCESS_FIELDS) + 1  # and the event's name


def _access_line(event: EventDict) -> dict[str, Any] | None:
    """The access log's own call as one literal; None if the keywords are not its own."""
    try:
        line = {
            "@timestamp": timestamp(),
            "log.level": "info",
            "message": event["event"],
            "http.request.method": event["method"],
            "url.path": event["path"],
            "http.route": event["route"],
            "http.response.status_code": event["status"],
            "event.duration": event["duration_ns"],
            "http.response.body.bytes": event["bytes"],
            "client.ip": event["client_ip"],
        }
        # Absent rather than null: most lines have no error and no trace.
        if (user_agent := event["user_agent"]) is not None:
            line["user_agent.original"] = user_agent
        if (error := event["error"]) is not None:
            line["error.type"] = error
        line["http.request.id"] = event["request_id"]
        if (trace_id := event["trace_id"]) is not None:
            line["trace.id"] = trace_id
            line["span.id"] = event["span_id"]
    except KeyError:
        return None
    line["ecs.version"] = ECS_VERSION
    return line


def _named_line(event: EventDict) -> dict[str, Any]:
    """Any other call: its keywords by their ECS names where they have one."""
    line = {"@timestamp": timestamp(), "log.level": "info", "message": event.pop("event", None)}
    for key, value in event.items():
        if value is not None:
            line[ACCESS_FIELDS.get(key, key)] = value
    line["ecs.version"] = ECS_VERSION
    return line


_UNSET: Any = object()  # a keyword the call did not pass


class RequestLines:
    """The access log's writer: ``info(event, **fields)``, as a structlog bound logger answers
    it, one JSON line into the same buffered stream. Not a structlog logger: its bound-logger
    call (the context copied, the processor chain walked) cost more than the line itself (in
    process, 4.4 against 1.3 µs a line).

    The access log's keywords (``ACCESS_FIELDS``) are parameters of ``info`` itself: the
    interpreter binds them by name, and the line is one dict literal, where a ``**fields``
    dictionary (built, then renamed into a second) cost twice the line's rendering. A call
    with other keywords, or without all of them, writes ``_named_line``'s line, as before."""

    def __init__(self, target: BinaryIO | LineBuffer, level: int) -> None:
        self._write = target.write
        # Fixed when made, as structlog's filtering logger fixes its level.
        self.info = self._line if level <= logging.INFO else self._dropped

    def _line(
        self,
        event: str,
        *,
        method: Any = _UNSET,
        path: Any = _UNSET,
        route: Any = _UNSET,
        status: Any = _UNSET,
        duration_ns: Any = _UNSET,
        bytes: Any = _UNSET,
        client_ip: Any = _UNSET,
        user_agent: Any = _UNSET,
        error: Any = _UNSET,
        request_id: Any = _UNSET,
        trace_id: Any = _UNSET,
        span_id: Any = _UNSET,
        **other: Any,
    ) -> None:
        if (
            error is None
            and trace_id is None
            and span_id is None
            and not other
            # Every keyword the access log passes, else it is another call: the general line.
            and method is not _UNSET
            and path is not _UNSET
            and route is not _UNSET
            and status is not _UNSET
            and duration_ns is not _UNSET
            and bytes is not _UNSET
            and client_ip is not _UNSET
            and request_id is not _UNSET
        ):
            # The common line (no error, no trace; absent rather than null), its keys constant:
            # one dict literal.
            if user_agent is not None and user_agent is not _UNSET:
                line = {
                    "@timestamp": timestamp(),
                    "log.level": "info",
                    "message": event,
                    "http.request.method": method,
                    "url.path": path,
                    "http.route": route,
                    "http.response.status_code": status,
                    "event.duration": duration_ns,
                    "http.response.body.bytes": bytes,
                    "client.ip": client_ip,
                    "user_agent.original": user_agent,
                    "http.request.id": request_id,
                    "ecs.version": ECS_VERSION,
                }
                self._write(orjson.dumps(line, default=repr, option=orjson.OPT_APPEND_NEWLINE))
                return
            if user_agent is None:
                line = {
                    "@timestamp": timestamp(),
                    "log.level": "info",
                    "message": event,
                    "http.request.method": method,
                    "url.path": path,
                    "http.route": route,
                    "http.response.status_code": status,
                    "event.duration": duration_ns,
                    "http.response.body.bytes": bytes,
                    "client.ip": client_ip,
                    "http.request.id": request_id,
                    "ecs.version": ECS_VERSION,
                }
                self._write(orjson.dumps(line, default=repr, option=orjson.OPT_APPEND_NEWLINE))
                return
        fields = {
            key: value
            for key, value in (
                ("method", method),
                ("path", path),
                ("route", route),
                ("status", status),
                ("duration_ns", duration_ns),
                ("bytes", bytes),
                ("client_ip", client_ip),
                ("user_agent", user_agent),
                ("error", error),
                ("request_id", request_id),
                ("trace_id", trace_id),
                ("span_id", span_id),
            )
            if value is not _UNSET
        }
        fields.update(other)
        fields["event"] = event
        self._write(_access_json(None, "info", fields) + b"\n")

    def _dropped(self, event: str, **fields: Any) -> None:
        return None


def request_line_logger() -> RequestLines:
    """The access log's logger: the same JSON line into the same buffered stream as
    ``configure_logging``'s, at its level, the line with its ECS names rendered by orjson. No
    context variables are merged: the caller passes every field, the request and trace ids
    included, by their short keywords (ACCESS_FIELDS, cheaper to pass than
    ``**{"http.request.method": ...}``)."""
    return RequestLines(_STREAMS[0] if _STREAMS else _stdout(), _LEVEL[0])


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> FilteringBoundLogger:
    flush_logs()  # lines still held for the stream being replaced
    target = stream or _stdout()
    _STREAMS[:] = [target]
    _LEVEL[0] = _LEVELS[level]
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _exceptions,
        _ecs,
        _json,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_: BufferedBytesLogger(target),
        cache_logger_on_first_use=True,
    )
    # Library loggers (asyncpg, granian's inside a worker) write the same JSON into the same
    # stream, at warning and above.
    handler = _LineHandler(BufferedBytesLogger(target))
    handler.setFormatter(EcsFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LineHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # bind() resolves structlog's lazy proxy now; the proxy costs ~0.5 us on every call.
    logger: FilteringBoundLogger = structlog.get_logger("hotpath").bind()
    return logger


class EcsFormatter(logging.Formatter):
    """A stdlib log record as the JSON line hotpath's own lines are, context variables (the
    request and trace ids) included. granian's own logging uses it through
    ``granian-logging.json``; ``configure_logging`` puts it on the root logger."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "@timestamp": timestamp(int(record.created * 1e9)),
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
            "log.logger": record.name,
        }
        for key, value in structlog.contextvars.get_contextvars().items():
            line[key] = value
        if record.exc_info:
            line["error.type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["error.stack_trace"] = self.formatException(record.exc_info)
        line["ecs.version"] = ECS_VERSION
        return orjson.dumps(line, default=repr).decode()


class _LineHandler(logging.Handler):
    """Records into hotpath's line buffer: warnings and above are flushed at once."""

    def __init__(self, sink: BufferedBytesLogger) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode()
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self._sink.urgent(line)
        else:
            self._sink.msg(line)
