"""The observing jobs of every request in one layer with one send wrapper: the request id, the
access log, the server span (tracing on), the metrics and the security headers.

Each job is a plain object in its own module (``RequestIds``, ``AccessLog``, ``Tracing``,
``HttpMetrics``, ``SecurityHeaders``) with hooks this layer calls: what begins a request, what
the response's start adds or records, what the end records. As five layers they cost five
coroutine or call frames that every await below resumed through, and five send wrappers a
message passed (docs/decisions/0005-middleware-order.md has the measurement).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from time import perf_counter_ns
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import RouteResolver, route_template

if TYPE_CHECKING:  # the job modules import this one for their one-job layers
    from middleware.access_log import AccessLog
    from middleware.metrics import HttpMetrics
    from middleware.request_id import RequestIds
    from middleware.security_headers import SecurityHeaders
    from middleware.tracing import Tracing

_START = "http.response.start"
_BODY = "http.response.body"
_PATHSEND = "http.response.pathsend"


class EdgeMiddleware:
    """Run the given jobs around each HTTP request; a job left as None costs a test, no call.

    The jobs run in the order the separate layers had, outermost first: the request id (so the
    access line, the span and every answer carry it), the access log, the server span (so the
    access line names it), the metrics, the security headers. The answer's start gets the
    security headers, then the request id; the duration, the route template (resolved once,
    by `resolve_route` for a request refused before routing) and the status go to the metrics
    and the access line once the app is done. A response that never started is a 500 to both;
    an exception is logged with its type and counted, then propagates; a cancelled request
    (the client left) leaves the in-flight gauge and is neither counted nor logged.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_ids: RequestIds | None = None,
        access_log: AccessLog | None = None,
        tracing: Tracing | None = None,
        metrics: HttpMetrics | None = None,
        security: SecurityHeaders | None = None,
        resolve_route: RouteResolver | None = None,
    ) -> None:
        self.app = app
        self.request_ids = request_ids
        self.access_log = access_log
        self.tracing = tracing
        self.metrics = metrics
        self.security = security
        self.resolve_route = resolve_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        ids = self.request_ids
        echoed = ids.begin(scope) if ids is not None else None
        security = self.security
        credentialed = security.credentialed(scope) if security is not None else False
        log = self.access_log
        status = 0
        size = 0

        # A plain function returning the inner awaitable: no coroutine per message.
        def send_edge(message: Message) -> Awaitable[None]:
            nonlocal status, size
            kind = message["type"]
            if kind == _BODY:
                size += len(message.get("body", b""))
            elif kind == _START:
                status = message["status"]
                if security is not None:
                    # A new list: the app's own is left as it was.
                    headers = security.secure(message.get("headers", ()), credentialed)
                    if echoed is not None:
                        headers.append(echoed)
                    message["headers"] = headers
                elif echoed is not None:
                    message["headers"] = [*message.get("headers", ()), echoed]
            elif kind == _PATHSEND and log is not None:
                # A file the server sends itself: no body message passes here.
                size += os.stat(message["path"]).st_size
            return send(message)

        metrics = self.metrics
        method = metrics.begin(scope) if metrics is not None else ""
        tracing = self.tracing
        start = perf_counter_ns()
        try:
            if tracing is None:
                await self.app(scope, receive, send_edge)
            else:
                with tracing.start(scope) as span:
                    tracing.opened(scope, span)
                    try:
                        await self.app(scope, receive, send_edge)
                    finally:
                        route = route_template(scope, self.resolve_route)
                        tracing.closed(scope, span, route, status)
        except Exception as exc:
            self._record(scope, method, status or 500, size, start, type(exc).__name__)
            raise
        else:
            # An app that returns without answering gets a 500 from the server.
            self._record(scope, method, status or 500, size, start, None)
        finally:
            if metrics is not None:
                metrics.leave(method)

    def _record(
        self, scope: Scope, method: str, status: int, size: int, start: int, error: str | None
    ) -> None:
        duration_ns = perf_counter_ns() - start
        metrics = self.metrics
        log = self.access_log
        if metrics is None and log is None:
            return
        route = route_template(scope, self.resolve_route)
        if metrics is not None:
            metrics.observe(method, route, status, duration_ns / 1e9)
        if log is not None:
            log.record(scope, route, status, size, duration_ns, error)
