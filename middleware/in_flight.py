"""Shed load at once when a process already has as many requests in flight as it can serve."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.boundary import BoundaryMiddleware
from middleware.deadline import DEADLINE
from middleware.types import ANSWER_HEADERS, OnError, Rescue

_START = "http.response.start"


class Overloaded(Exception):
    """Too many requests in flight in this process (the server answers 503 with Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many requests in flight")
        self.retry_after = retry_after


class InFlightLimitMiddleware:
    """Answer `on_error(Overloaded(retry_after))` while `limit` HTTP requests are in flight.

    Past saturation, queueing only adds latency until every request times out; refusing the
    excess at once keeps the admitted ones fast and tells clients when to come back. The cap is
    per process (each granian worker has its own). A request holds its slot until the inner app
    returns, raises or is cancelled. Exempt paths (health probes, the metrics scrape) are never
    counted nor refused: an orchestrator must see an overloaded process as alive. ``in_flight``
    is the current count, for a gauge; ``on_shed`` is called for each request refused (only
    then: an admitted request pays nothing for it).

    `deadline` (seconds, 0: none) is DeadlineMiddleware's job done here: each request admitted
    (an exempt one too) gets its deadline as it passes, so its time starts once it is admitted,
    as it did with the deadline as the layer inside this one, without that layer's call.

    `rescue` (None: none) is BoundaryMiddleware's job done here, in the same coroutine that
    holds the slot: an exception from the app is answered by it, as it was by the boundary as
    the layer inside this one, with a coroutine frame fewer for every await below to resume
    through. An exempt request goes through the boundary's own coroutine.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        retry_after: int = 1,
        on_error: OnError,
        exempt_paths: frozenset[str] = frozenset({"/livez", "/readyz", "/metrics"}),
        on_shed: Callable[[], None] | None = None,
        deadline: float = 0,
        rescue: Rescue | None = None,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise ValueError(f"retry_after must be a non-negative int, got {retry_after!r}")
        if not callable(on_error):
            raise TypeError("on_error must be callable")
        if isinstance(exempt_paths, str) or not all(
            isinstance(path, str) and path.startswith("/") for path in exempt_paths
        ):
            raise ValueError(f"exempt_paths must be paths starting with '/', got {exempt_paths!r}")
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline < 0:
            raise ValueError(f"deadline must be a non-negative number, got {deadline!r}")
        self.app = app
        self.deadline = float(deadline)
        self.limit = limit
        self.retry_after = retry_after
        self.on_error = on_error
        self.exempt_paths = frozenset(exempt_paths)
        self.on_shed = on_shed
        self.in_flight = 0
        self.rescue = rescue
        # Exempt requests' boundary: not counted, but a bug is still a 500.
        self._exempt = app if rescue is None else BoundaryMiddleware(app, rescue=rescue).guarded

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Exempt requests get the inner app's awaitable: see SecurityHeadersMiddleware.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        if scope["path"] in self.exempt_paths:
            if self.deadline:
                DEADLINE.set(time.monotonic() + self.deadline)
            return self._exempt(scope, receive, send)
        return self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Checked and taken inside the coroutine, with no await between: an awaitable that is
        # created but never run can neither take a slot nor leak one.
        if self.in_flight >= self.limit:
            if self.on_shed is not None:
                self.on_shed()
            await self.on_error(Overloaded(self.retry_after))(scope, receive, send)
            return
        self.in_flight += 1
        if self.deadline:
            DEADLINE.set(time.monotonic() + self.deadline)
        rescue = self.rescue
        try:
            if rescue is None:
                await self.app(scope, receive, send)
                return
            # BoundaryMiddleware.guarded, inline: a coroutine frame fewer.
            started = False
            scope[ANSWER_HEADERS] = None

            def send_tracked(message: Message) -> Awaitable[None]:
                nonlocal started
                if message["type"] == _START:
                    started = True
                    extra = scope[ANSWER_HEADERS]
                    if extra is not None:
                        message["headers"] = [*message.get("headers", ()), *extra]
                return send(message)

            try:
                await self.app(scope, receive, send_tracked)
            except Exception as exc:
                await rescue(exc, scope, receive, send, started)
        finally:
            self.in_flight -= 1
