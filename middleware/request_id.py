"""Give every request an id: in the scope, in structlog's context, and in the response; and
read the caller's W3C ``traceparent``, so log lines carry its trace id with tracing off too."""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Scope
from structlog.contextvars import bind_contextvars, reset_contextvars

from middleware.edge import EdgeMiddleware
from middleware.trace_context import CALLER_TRACEPARENT, TRACEPARENT, parse_traceparent

_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}").fullmatch
_HEADER_NAME = re.compile(r"[a-z0-9-]+").fullmatch


class _RandomIds:
    """128-bit hex ids cut from one os.urandom() call per 256 ids; a syscall per id costs 2x.

    Not a generator: concurrent next() calls from two threads would raise instead of racing.
    """

    def __init__(self) -> None:
        self.reset()
        # A forked worker must not hand out the ids left in its parent's pool.
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._pool = ""
        self._next = 0

    def __call__(self) -> str:
        start = self._next
        if start >= len(self._pool):
            self._pool = os.urandom(16 * 256).hex()
            start = 0
        self._next = start + 32
        return self._pool[start : start + 32]


_new_id = _RandomIds()


def structlog_var(key: str) -> ContextVar[Any]:
    # The very ContextVar that bind_contextvars() uses, so merge_contextvars() picks our value up;
    # setting it directly costs a third of a bind_contextvars() + reset_contextvars() pair.
    tokens = bind_contextvars(**{key: ...})
    reset_contextvars(**tokens)
    return tokens[key].var


# The context variables' names are the log fields' (ECS: docs/decisions/0012-ecs-log-fields.md).
REQUEST_ID_FIELD = "http.request.id"
TRACE_ID_FIELD = "trace.id"
SPAN_ID_FIELD = "span.id"


class RequestIds:
    """Accept a sane incoming request id or make one; expose it everywhere for the request.

    ``begin`` stores the id in `scope["request_id"]`, binds it as `http.request.id` in
    structlog's context variables of the request's task, and returns the response header that
    echoes it, which the edge (middleware/edge.py) adds to every answer, error answers included.

    A valid `traceparent` header (exactly one) puts its trace id and the caller's span id in
    `scope["trace_id"]`/`scope["span_id"]` and in the context as `trace.id`/`span.id`, and the
    parsed header in `scope["traceparent"]` and `CALLER_TRACEPARENT`. With tracing on, the
    tracing job replaces the span id with the server span's.
    """

    def __init__(self, *, header: str = "x-request-id") -> None:
        name = header.lower()
        if not _HEADER_NAME(name):
            raise ValueError(f"header must be an HTTP header name, got {header!r}")
        self.header = name.encode("ascii")
        self._var = structlog_var(REQUEST_ID_FIELD)
        self._trace_var = structlog_var(TRACE_ID_FIELD)
        self._span_var = structlog_var(SPAN_ID_FIELD)

    def begin(self, scope: Scope) -> tuple[bytes, bytes]:
        """The request's id in the scope and the context; the header that echoes it."""
        header = self.header
        incoming: bytes | None = None
        traceparent: bytes | None = None
        repeated = False
        for name, value in scope["headers"]:
            if name == header:
                if incoming is None:  # the first one counts
                    incoming = value
            elif name == TRACEPARENT:
                repeated = traceparent is not None
                traceparent = value
        if traceparent is not None and not repeated:
            parent = parse_traceparent(traceparent)
            if parent is not None:
                scope["traceparent"] = parent
                scope["trace_id"] = parent.trace_id
                scope["span_id"] = parent.parent_id
                self._trace_var.set(parent.trace_id)
                self._span_var.set(parent.parent_id)
                CALLER_TRACEPARENT.set(parent)
        if incoming is not None and _SANE_ID(incoming):
            request_id = incoming.decode("ascii")
        else:
            request_id = _new_id()
        scope["request_id"] = request_id
        # Set without a reset, as the request deadline is (middleware/deadline.py): the server
        # runs each request in a task of its own, whose context ends with it, and a reset would
        # need a coroutine frame around every request.
        self._var.set(request_id)
        return (header, request_id.encode("ascii"))


class RequestIdMiddleware(EdgeMiddleware):
    """The request id alone as a layer (the server's stack runs it in its one edge layer)."""

    def __init__(self, app: ASGIApp, *, header: str = "x-request-id") -> None:
        super().__init__(app, request_ids=RequestIds(header=header))
