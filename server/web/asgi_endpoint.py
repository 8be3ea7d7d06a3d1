"""Endpoints written as raw ASGI apps, for the hottest reads.

A Starlette endpoint pays, on every request, for a Request object, the handler's coroutine, a
Response that assembles its headers, and the Response's own coroutine that sends them; every
coroutine is a frame that each await below it resumes through. ``@asgi_endpoint`` marks a
handler written as an ASGI app, ``async def handler(scope, receive, send) -> None``: its route
calls it directly (an open route: nothing between the router and the handler; a guarded one:
the access check inline, on the scope). The handler reads what it needs from the scope
(``scope_container``, ``scope_path_id``, ``scope_header``) and sends its answer itself, two
messages built by ``json_start``/``empty_start`` and ``body_message``.

What does not change: an exception it raises reaches the error boundary as a Starlette
endpoint's does, so its error answers (problem+json) are the same; ``@api`` documents it and
the OpenAPI document reads it as it reads any handler; HEAD is served as Starlette serves it
(the server drops the body).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar, cast

from starlette.types import Message, Receive, Scope, Send

__all__ = [
    "ASGI_ATTR",
    "AsgiEndpoint",
    "asgi_endpoint",
    "body_message",
    "empty_start",
    "is_asgi_endpoint",
    "json_start",
]

ASGI_ATTR = "__asgi_endpoint__"

AsgiEndpoint = Callable[[Scope, Receive, Send], Awaitable[None]]
A = TypeVar("A", bound=AsgiEndpoint)

_JSON = (b"content-type", b"application/json")


def asgi_endpoint(handler: A) -> A:
    """Mark ``handler`` (an ``async def`` taking scope, receive and send) as its own ASGI app."""
    if not inspect.iscoroutinefunction(cast(object, handler)):  # no narrowing of A
        raise TypeError(f"{handler!r}: an ASGI endpoint is an async function")
    setattr(handler, ASGI_ATTR, True)
    return handler


def is_asgi_endpoint(handler: object) -> bool:
    return getattr(handler, ASGI_ATTR, False) is True


def json_start(body: bytes, headers: Iterable[tuple[bytes, bytes]], status: int = 200) -> Message:
    """The start of a JSON answer with ``body`` already encoded: the headers Starlette's
    Response would send for it (content-type, content-length), then ``headers``. A fresh
    message and list each time: the layers above write into both."""
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
    }


def empty_start(status: int, headers: Iterable[tuple[bytes, bytes]]) -> Message:
    """The start of an answer without a body (a 304 or 204): Starlette's Response sends no
    content-type or content-length for those, only ``headers``."""
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def body_message(body: bytes = b"") -> Message:
    return {"type": "http.response.body", "body": body}
