"""Where an exception from the app (authentication, the rate limit, the router, a route)
becomes an answer: the layer that runs the server's ``rescue`` (middleware/types.py).

With an in-flight cap the cap's layer runs it in its own coroutine (middleware/in_flight.py):
one frame where two were, for every await below to resume through. This layer does it when
there is no cap. Its send wrapper, which tracks whether the answer started (a known error can
no longer be answered then), also adds the headers an inner layer left under
``ANSWER_HEADERS`` (the rate limit's) to the answer's start: one wrapper where two were.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import ANSWER_HEADERS, Rescue

_START = "http.response.start"


class BoundaryMiddleware:
    def __init__(self, app: ASGIApp, *, rescue: Rescue) -> None:
        if not callable(rescue):
            raise TypeError("rescue must be callable")
        self.app = app
        self.rescue = rescue

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self.guarded(scope, receive, send)

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, its exception rescued (InFlightLimitMiddleware._counted has this inline)."""
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
            # The raw send: an error answer carries no header of a layer inside, as before.
            await self.rescue(exc, scope, receive, send, started)
