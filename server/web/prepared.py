"""Answers that are the same bytes for every request, served as raw ASGI.

A probe's answer never changes, yet a Starlette endpoint pays for it on every request: a
Request object, the handler's coroutine, a Response that renders its body and encodes its
headers (about 6 us of a /livez on the bench box, more than the router and three layers), and
the Response's own coroutine. ``@prepared(answer)`` marks a handler whose answer is ``answer``;
the route serves ``answer`` itself, which only sends two fresh messages. The handler stays what
the OpenAPI document reads and what a direct caller gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

PREPARED_ATTR = "__prepared__"

F = TypeVar("F", bound=Callable[..., Any])


class PreparedAnswer:
    """An ASGI app that answers every request with the same status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes,
        *,
        status: int = 200,
        media_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        extra = (headers or {}).items()
        self.headers: tuple[tuple[bytes, bytes], ...] = (
            (b"content-type", media_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Fresh messages and header list each time: the layers above write into them.
        await send(
            {"type": "http.response.start", "status": self.status, "headers": list(self.headers)}
        )
        await send({"type": "http.response.body", "body": self.body})

    def response(self) -> Response:
        """The same answer as a Starlette Response, for the handler's direct callers."""
        response = Response(self.body, status_code=self.status)
        response.raw_headers = list(self.headers)
        return response


def prepared(answer: PreparedAnswer) -> Callable[[F], F]:
    """Mark a handler whose answer is always ``answer``: its route serves ``answer`` directly
    (an open route only: the access guard needs the Request it skips)."""

    def mark(handler: F) -> F:
        setattr(handler, PREPARED_ATTR, answer)
        return handler

    return mark


def prepared_answer(handler: object) -> PreparedAnswer | None:
    return getattr(handler, PREPARED_ATTR, None)
