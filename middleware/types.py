"""Types shared by the middleware, and the exceptions the server maps to responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import FunctionType, MethodType
from typing import Any, Protocol

from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

OnError = Callable[[Exception], ASGIApp]
"""Turns an exception into an ASGI app that answers it (the server's problem+json renderer)."""

Rescue = Callable[[Exception, Scope, Receive, Send, bool], Awaitable[None]]
"""Answers an exception the app raised, given whether the app's answer had started (then
nothing more can be sent): returns when it is handled, raises what must propagate (a bug, once
its 500 is sent). The server's is ErrorBoundary.rescue (server/web/error_boundary.py)."""

ANSWER_HEADERS = "hotpath.answer_headers"
"""Scope key set by the layer that runs the rescue (middleware/boundary.py): headers a layer
inside puts there (the rate limit's) are added to the answer's start by that layer's send
wrapper, so the inner layer needs no wrapper of its own. Absent: no such layer outside."""

REQUEST_BODY = "hotpath.request_body"
"""Scope key set by BodyLimitMiddleware (middleware/body_limit.py) to the whole request body it
read before the app runs, the bytes the app's receive() also gives: a handler can take them
without a receive() and Starlette's body() loop. Absent: no body was read (none was sent, or
the client left, or no such layer runs outside)."""

UNMATCHED_ROUTE = "unmatched"


class InfoLogger(Protocol):
    """The part of a structlog bound logger the access log needs."""

    def info(self, event: str, **kw: Any) -> Any: ...


class PayloadTooLarge(Exception):
    """The request body is larger than the configured limit (the server answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class BadContentLength(Exception):
    """The Content-Length header is not a single non-negative integer (the server answers 400)."""

    def __init__(self) -> None:
        super().__init__("invalid Content-Length header")


class BodyTimeout(Exception):
    """The request body did not arrive in time (the server answers 408 and closes)."""

    def __init__(self) -> None:
        super().__init__("the request body did not arrive in time")


class BodyReadersBusy(Exception):
    """Too many request bodies are being read at once, in all or from this client (503)."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("too many request bodies in progress")
        self.retry_after = retry_after


class CorsRejected(Exception):
    """A CORS preflight asked for an origin, a method or a header not allowed (403); the
    message says which are allowed."""


RouteResolver = Callable[[Scope], object | None]
"""The route a request's path names, whatever its method; None when no route has that path."""


def route_template(scope: Scope, resolve: RouteResolver | None = None) -> str:
    """The matched route's template (`/v1/items/{id}`), never the raw path.

    Starlette's router stores the matched route in `scope["route"]`; a nested router under a
    Mount overwrites it with its own route and extends `root_path` with the mount prefix. A
    request answered before routing (a 401, a 429, a 413) has none: `resolve` finds the route
    its path names, and it is kept in the scope for the next caller.
    """
    route = scope.get("route")
    if route is None:
        if resolve is None or (route := resolve(scope)) is None:
            return UNMATCHED_ROUTE
        scope["route"] = route
    if isinstance(route, Mount):
        # A Mount is left as the route when its inner router found nothing (a 404 under the
        # prefix); a mounted plain app (static files) is labelled by its prefix.
        if route.routes:
            return UNMATCHED_ROUTE
        return scope.get("root_path") or "/"
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    root_path: str = scope.get("root_path", "")
    return root_path + template if root_path else template


_HELD_AS_THEY_ARE = (FunctionType, MethodType)


def bound(app: ASGIApp) -> ASGIApp:
    """What the layer outside `app` should hold and call: a layer object's bound ``__call__``;
    a function or a bound method as it is. Calling an object goes through its type's call slot,
    unspecialized, and its frame starts a new interpreter loop; a bound method's call the
    interpreter specializes and inlines (callgrind, a scratch chain of five plain layers:
    8,900 -> 5,500 instructions a call through them, about 670 a layer)."""
    if type(app) in _HELD_AS_THEY_ARE:
        return app
    # getattr: mypy reads ``app.__call__`` on a Callable type as a call of it.
    call: ASGIApp = getattr(app, "__call__")  # noqa: B004, B009
    return call
