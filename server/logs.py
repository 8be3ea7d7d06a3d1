"""structlog set-up: one JSON line per event, bytes straight to stdout.

structlog's native bound logger with an orjson renderer costs a few microseconds a line, about
half of stdlib JSON logging; the request id comes in through contextvars.
"""

from __future__ import annotations

import logging
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
    event["ts"] = round(time.time(), 6)
    return event


def _json(_: WrappedLogger, __: str, event: EventDict) -> bytes:
    return orjson.dumps(event, default=repr)


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> FilteringBoundLogger:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
        structlog.processors.format_exc_info,
        _json,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(stream or sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    # Library loggers (asyncpg, granian) go to stderr at warning and above.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # bind() resolves structlog's lazy proxy now; the proxy costs ~0.5 us on every call.
    logger: FilteringBoundLogger = structlog.get_logger("hotpath").bind()
    return logger
