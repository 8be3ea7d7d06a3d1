"""Rate limiting at the edge: every request of a limited route spends from its key's budget.

The collaborators do the work: ``classify(scope)`` names the key and the policy (or None: not
limited); ``admit(key, policy)`` gives the headers of a request admitted from what the process
holds (a leased token), the common case, without a decision object, and None otherwise;
``check(key, policy)`` then decides at once when the process can (a denial it already knows)
and returns None when only the shared store can answer, ``wait(key, policy)`` then gives that
answer, and ``headers(decision)`` renders the RateLimit-Policy / RateLimit (and, on a denial,
Retry-After) headers. A denied request is answered through ``on_error(RateLimited(headers))``;
an allowed one carries the headers too: added by the error boundary's send wrapper when a
boundary runs outside (``ANSWER_HEADERS`` in the scope), by a wrapper of this layer otherwise.
It runs after authentication (the key is the API key, the user or the client address).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import ANSWER_HEADERS, OnError

Header = tuple[bytes, bytes]


class _Decision(Protocol):
    @property
    def allowed(self) -> bool: ...


Classify = Callable[[Scope], tuple[str, Any] | None]
Admit = Callable[[str, Any], Sequence[Header] | None]  # the headers of an admitted request
# Two callables rather than one returning "a decision or an awaitable of one": telling those
# apart on every request (inspect.isawaitable, an ABC check) cost 6% of the limiter's path.
Check = Callable[[str, Any], Any]  # a decision, or None: ask ``wait``
Wait = Callable[[str, Any], Awaitable[Any]]  # the decision ``check`` could not make at once
RenderHeaders = Callable[[Any], Sequence[Header]]


class RateLimited(Exception):
    """Over the limit: the server answers 429 with these headers (Retry-After among them)."""

    def __init__(self, headers: Sequence[Header]) -> None:
        super().__init__("rate limit exceeded")
        self.headers = list(headers)


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        classify: Classify,
        admit: Admit,
        check: Check,
        wait: Wait,
        headers: RenderHeaders,
        on_error: OnError,
    ) -> None:
        if not all(callable(f) for f in (classify, admit, check, wait, headers, on_error)):
            raise TypeError("classify, admit, check, wait, headers and on_error must be callable")
        self.app = app
        self.classify = classify
        self.admit = admit
        self.check = check
        self.wait = wait
        self.headers = headers
        self.on_error = on_error

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine when the decision is local (a leased token): see security_headers.py.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        found = self.classify(scope)
        if found is None:
            return self.app(scope, receive, send)
        extra = self.admit(*found)
        if extra is None:
            decision = self.check(*found)
            if decision is None:
                return self._awaiting(self.wait(*found), scope, receive, send)
            extra = self.headers(decision)
            if not decision.allowed:
                return self.on_error(RateLimited(extra))(scope, receive, send)

        if ANSWER_HEADERS in scope:
            # The error boundary's send wrapper adds them (middleware/boundary.py): no
            # wrapper of our own, a call fewer for each message.
            scope[ANSWER_HEADERS] = extra
            return self.app(scope, receive, send)
        return self.app(scope, receive, _adding(extra, send))

    async def _awaiting(
        self, pending: Awaitable[_Decision], scope: Scope, receive: Receive, send: Send
    ) -> None:
        decision = await pending
        extra = self.headers(decision)
        if not decision.allowed:
            await self.on_error(RateLimited(extra))(scope, receive, send)
            return
        if ANSWER_HEADERS in scope:
            scope[ANSWER_HEADERS] = extra
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, _adding(extra, send))


def rate_limit_layer(
    app: ASGIApp,
    *,
    classify: Classify,
    admit: Admit,
    check: Check,
    wait: Wait,
    headers: RenderHeaders,
    on_error: OnError,
) -> ASGIApp:
    """The layer as the stack should hold it: a RateLimitMiddleware's bound ``__call__``. The
    layer outside calls it on every request; a bound method's call the interpreter specializes
    and inlines, an instance's goes through its type's call slot, unspecialized."""
    layer = RateLimitMiddleware(
        app,
        classify=classify,
        admit=admit,
        check=check,
        wait=wait,
        headers=headers,
        on_error=on_error,
    )
    return layer.__call__


def _adding(extra: Sequence[Header], send: Send) -> Send:
    """``send``, with ``extra`` after the headers of the response's start."""

    def send_with_limits(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        return send(message)

    return send_with_limits
