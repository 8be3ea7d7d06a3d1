"""Where an exception from a route or the auth middleware becomes an answer.

Starlette stacks two layers for this (ServerErrorMiddleware outermost, ExceptionMiddleware
innermost, each wrapping ``send``, the latter also every route); this is the one layer that does
both, so the frames every await below has to resume through are fewer. Known errors get their
handler's answer; anything else gets the 500 handler's answer and is raised again for the
server to see, as Starlette does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


class ErrorBoundary:
    def __init__(self, app: ASGIApp, handlers: Mapping[type[Exception], Handler]) -> None:
        if Exception not in handlers:
            raise ValueError("handlers need an Exception entry: the 500 answer")
        self.app = app
        self.handlers = dict(handlers)
        self.unexpected = handlers[Exception]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        def tracking(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            return send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            handler = self._handler(exc)
            known = handler is not self.unexpected
            if known and started:
                raise RuntimeError(
                    "Caught handled exception, but response already started."
                ) from exc
            response = await handler(Request(scope, receive, send), exc)
            if not started:
                await response(scope, receive, send)
            if not known:
                raise

    def _handler(self, exc: Exception) -> Handler:
        for kind in type(exc).__mro__:
            if kind in self.handlers:
                return self.handlers[kind]
        return self.unexpected
