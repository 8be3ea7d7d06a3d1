"""One structured log line per HTTP request, written once the response is complete."""

from __future__ import annotations

import os
from collections.abc import Awaitable
from time import perf_counter_ns

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import InfoLogger, RouteResolver, route_template

_USER_AGENT = b"user-agent"
_MAX_USER_AGENT = 256


class AccessLogMiddleware:
    """Log method, path, route, status, duration, size, client and user agent of each request.

    The query string is never logged: it may carry secrets. The request id, and the trace and
    span ids when there are any, come from the scope, where RequestIdMiddleware (outside this
    one) and the tracing layer (inside) put them. The logger maps these short keywords to the
    log schema's names (server/runtime/logs.py). ``bytes`` is the body sent: a file the server
    sends itself (ASGI's pathsend, which Starlette's FileResponse uses under granian) counts
    with its size.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: InfoLogger,
        enabled: bool = True,
        resolve_route: RouteResolver | None = None,
    ) -> None:
        if not callable(getattr(logger, "info", None)):
            raise TypeError("logger must have an info(event, **fields) method")
        self.app = app
        self.logger = logger
        self.enabled = enabled
        self.resolve_route = resolve_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return

        status = 0
        size = 0

        def send_counting(message: Message) -> Awaitable[None]:
            nonlocal status, size
            kind = message["type"]
            if kind == "http.response.body":
                size += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.pathsend":
                size += os.stat(message["path"]).st_size
            return send(message)

        start = perf_counter_ns()
        try:
            await self.app(scope, receive, send_counting)
        except Exception as exc:
            self._log(scope, status or 500, size, start, type(exc).__name__)
            raise
        # An app that returns without answering gets a 500 from the server.
        self._log(scope, status or 500, size, start, None)

    def _log(self, scope: Scope, status: int, size: int, start: int, error: str | None) -> None:
        duration_ns = perf_counter_ns() - start
        user_agent = None
        for name, value in scope["headers"]:
            if name == _USER_AGENT:
                user_agent = value[:_MAX_USER_AGENT].decode("latin-1")
                break
        client = scope.get("client")
        client_ip = client[0] if client else None
        # Keywords spelled out rather than **extra: unpacking doubles the cost of the call.
        self.logger.info(
            "http_request",
            method=scope["method"],
            path=scope["path"],
            route=route_template(scope, self.resolve_route),
            status=status,
            duration_ns=duration_ns,
            bytes=size,
            client_ip=client_ip,
            user_agent=user_agent,
            error=error,
            request_id=scope.get("request_id"),
            trace_id=scope.get("trace_id"),
            span_id=scope.get("span_id"),
        )
