"""Where an exception from a route or the auth middleware becomes an answer.

Starlette stacks two layers for this (ServerErrorMiddleware outermost, ExceptionMiddleware
innermost, each wrapping ``send``, the latter also every route); here it is one ``rescue``
that the stack runs in the in-flight cap's coroutine (or a layer of its own without a cap:
middleware/boundary.py), so no frame of its own is between the cap and authentication. Known
errors get their handler's answer; anything else gets the 500 handler's answer and is raised
again for the server to see, as Starlette does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


class ErrorBoundary:
    def __init__(self, handlers: Mapping[type[Exception], Handler]) -> None:
        if Exception not in handlers:
            raise ValueError("handlers need an Exception entry: the 500 answer")
        self.handlers = dict(handlers)
        self.unexpected = handlers[Exception]

    async def rescue(
        self, exc: Exception, scope: Scope, receive: Receive, send: Send, started: bool
    ) -> None:
        """Answer ``exc`` (middleware/types.py's Rescue): a known error by its handler, unless
        the answer had started; anything else by the 500 handler (when it had not), then
        raised again."""
        handler = self._handler(exc)
        known = handler is not self.unexpected
        if known and started:
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        response = await handler(Request(scope, receive, send), exc)
        if not started:
            await response(scope, receive, send)
        if not known:
            raise exc

    def _handler(self, exc: Exception) -> Handler:
        for kind in type(exc).__mro__:
            if kind in self.handlers:
                return self.handlers[kind]
        return self.unexpected
