"""One structured log line per HTTP request, written once the response is complete."""

from __future__ import annotations

from starlette.types import ASGIApp, Scope

from middleware.edge import EdgeMiddleware
from middleware.types import InfoLogger, RouteResolver

_USER_AGENT = b"user-agent"
_MAX_USER_AGENT = 256


class AccessLog:
    """Log method, path, route, status, duration, size, client and user agent of each request.

    The edge (middleware/edge.py) counts the bytes, times the request and resolves the route,
    then calls ``record``. The query string is never logged: it may carry secrets. The request
    id, and the trace and span ids when there are any, come from the scope, where the request
    id and tracing jobs put them. The logger maps these short keywords to the log schema's
    names (server/runtime/logs.py). ``bytes`` is the body sent: a file the server sends itself
    (ASGI's pathsend, which Starlette's FileResponse uses under granian) counts with its size.
    """

    def __init__(self, logger: InfoLogger) -> None:
        if not callable(getattr(logger, "info", None)):
            raise TypeError("logger must have an info(event, **fields) method")
        self.logger = logger

    def record(
        self,
        scope: Scope,
        route: str,
        status: int,
        size: int,
        duration_ns: int,
        error: str | None,
    ) -> None:
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
            route=route,
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


class AccessLogMiddleware(EdgeMiddleware):
    """The access log alone as a layer (the server's stack runs it in its one edge layer);
    ``enabled=False`` logs nothing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: InfoLogger,
        enabled: bool = True,
        resolve_route: RouteResolver | None = None,
    ) -> None:
        log = AccessLog(logger)  # checked even when disabled
        super().__init__(app, access_log=log if enabled else None, resolve_route=resolve_route)
