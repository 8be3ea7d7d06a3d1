"""Give every HTTP request a deadline that the code below it can read.

The deadline lives in a ContextVar, so whatever runs in the request's task (a database call
three layers down) can ask how long it has left without the deadline being passed through every
signature. The database layer turns the time left into each statement's timeout, which also
cancels the statement inside PostgreSQL: a slow query or a lock wait ends when the request's
time is up instead of holding a connection that no client is waiting for.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

# Set by this layer, or by the in-flight cap's layer when the stack has one (it admits the
# request and starts its deadline in one call: middleware/in_flight.py).
DEADLINE: ContextVar[float | None] = ContextVar("hotpath_request_deadline", default=None)


def time_left() -> float | None:
    """Seconds until the current request's deadline (0 or less once past it); None outside a
    request, or in work that ``detach()`` released from one."""
    deadline = DEADLINE.get()
    if deadline is None:
        return None
    return deadline - time.monotonic()


def detach() -> None:
    """Free the current task from the request's deadline: for work a request starts but does
    not wait for (a task copies its creator's context, deadline included)."""
    DEADLINE.set(None)


class DeadlineMiddleware:
    """Set the deadline of each HTTP request to `seconds` after it reaches this layer."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        self.app = app
        self.seconds = float(seconds)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Set without a reset: granian runs each request in a task of its own, whose context
        # dies with it, and a reset would need a coroutine frame around every request.
        if scope["type"] == "http":
            DEADLINE.set(time.monotonic() + self.seconds)
        return self.app(scope, receive, send)
