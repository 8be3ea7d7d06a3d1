"""Resolve the request's credentials into a principal before routing.

The collaborator does the work: ``authenticate(authorization_header, scope)`` returns a
principal, or an awaitable of one when it has to wait (an API key not yet cached), or raises
(the scope is for what it records of a refused credential: client, request id). This class only
finds the header, stores the result in ``scope["principal"]`` (None for anonymous requests) and
answers the failures it is told about (``handled``) through the injected ``on_error``; anything
else propagates, so a bug is a logged 500. It never falls back to anonymous when credentials
were sent but did not verify.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from middleware.types import OnError

_AUTHORIZATION = b"authorization"
_API_KEY = b"x-api-key"

Authenticate = Callable[[str, Scope], Any]  # a principal, or an awaitable of one


class AuthenticationMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate,
        on_error: OnError,
        handled: tuple[type[Exception], ...],
        own_auth_paths: frozenset[str] = frozenset(),
    ) -> None:
        if not callable(authenticate) or not callable(on_error):
            raise TypeError("authenticate and on_error must be callable")
        self.app = app
        self.authenticate = authenticate
        self.on_error = on_error
        self.handled = handled
        # Endpoints that check their own credentials (e.g. a metrics scrape token).
        self.own_auth_paths = own_auth_paths

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine when the principal is known at once (a verified token): the inner
        # app's awaitable is handed back, a frame fewer for everything below to resume through.
        if scope["type"] != "http" or scope["path"] in self.own_auth_paths:
            return self.app(scope, receive, send)
        credentials: bytes | None = None
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                credentials = value
                break  # Authorization wins over X-API-Key
            if name == _API_KEY and credentials is None:
                # Its own scheme: the collaborator accepts only API keys under it.
                credentials = b"ApiKey " + value
        if credentials is None:
            scope["principal"] = None
            return self.app(scope, receive, send)
        try:
            found = self.authenticate(credentials.decode("latin-1"), scope)
        except self.handled as exc:
            return self.on_error(exc)(scope, receive, send)
        # What makes an awaitable; inspect.isawaitable's ABC check costs ten times as much.
        if hasattr(found, "__await__"):
            return self._awaiting(found, scope, receive, send)
        scope["principal"] = found
        return self.app(scope, receive, send)

    async def _awaiting(
        self, found: Awaitable[Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            scope["principal"] = await found
        except self.handled as exc:
            await self.on_error(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
