"""Read each request body whole before the app runs, within a size limit and a time limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import (
    REQUEST_BODY,
    BadContentLength,
    BodyReadersBusy,
    BodyTimeout,
    OnError,
    PayloadTooLarge,
)

_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_FRAMED_BY_HEADERS = frozenset(("1.0", "1.1"))
# More digits than this is beyond any limit, and keeps int() away from huge strings.
_MAX_DIGITS = 18


@dataclass(frozen=True, slots=True)
class BodyTiming:
    """How long a body may take and how many may be read at once (see BodyLimitMiddleware)."""

    timeout: float = 10.0
    min_rate: float = 1024.0
    max_timeout: float = 60.0
    max_readers: int = 1024
    max_readers_per_client: int = 64


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class BodyLimitMiddleware:
    """Hand the app a request body that is complete, at most `max_bytes` long, and arrived in
    time (`timing`); answer through `on_error` otherwise.

    Size: a declared Content-Length over the limit (or an invalid one: `BadContentLength`) is
    answered before anything is read; a body without a trustworthy length is counted as it
    arrives (`PayloadTooLarge`).

    Time, as Apache's mod_reqtimeout does it: the body has `timeout` seconds, extended by one
    second for every `min_rate` bytes received, to at most `max_timeout` seconds in all. A body
    that is late or trickles in is answered with `BodyTimeout` (408) and the connection closed:
    a client that announces a body and sends nothing can no longer hold a request open.

    Capacity: the body is read here, outside the in-flight cap (which sits inside this layer),
    so requests waiting for their bodies never take the slots that admitted requests use.
    They have a budget of their own instead: at most `max_readers` bodies are read at once in
    this process, `max_readers_per_client` from one client address; past either the request is
    refused at once with `BodyReadersBusy` (503), so reads keep being served whatever a few
    clients announce.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        on_error: OnError,
        timing: BodyTiming = BodyTiming(),
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        if not callable(on_error):
            raise TypeError("on_error must be callable")
        self.timeout = _positive("timeout", timing.timeout)
        self.min_rate = _positive("min_rate", timing.min_rate, allow_zero=True)
        self.max_timeout = _positive("max_timeout", timing.max_timeout)
        if self.max_timeout < self.timeout:
            raise ValueError("max_timeout must be at least timeout")
        self.max_readers = _count("max_readers", timing.max_readers)
        self.max_readers_per_client = _count(
            "max_readers_per_client", timing.max_readers_per_client
        )
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error
        self.readers = 0
        self._per_client: dict[str, int] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine unless a body has to be read: see SecurityHeadersMiddleware.
        if scope["type"] != "http":
            return self.app(scope, receive, send)

        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == _CONTENT_LENGTH:
                if declared is not None and value != declared:
                    return self.on_error(BadContentLength())(scope, receive, send)
                declared = value
            elif name == _TRANSFER_ENCODING:
                chunked = True
        if declared is None:
            if not chunked and scope.get("http_version") in _FRAMED_BY_HEADERS:
                # HTTP/1.x: a request with neither header has no body (RFC 9112 6.3), as nearly
                # every GET; skipping the reader saves a third of a microsecond.
                return self.app(scope, receive, send)
        else:
            # bytes.isdigit() accepts ASCII digits only: no sign, space or underscore.
            if not declared.isdigit():
                return self.on_error(BadContentLength())(scope, receive, send)
            if len(declared) > _MAX_DIGITS or int(declared) > self.max_bytes:
                return self.on_error(PayloadTooLarge(self.max_bytes))(scope, receive, send)
            if not chunked and int(declared) == 0:
                return self.app(scope, receive, send)
        return self._read_first(scope, receive, send)

    async def _read_first(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        address = client[0] if client else ""
        # Counted with no await between check and take (see InFlightLimitMiddleware).
        held = self._per_client.get(address, 0)
        if self.readers >= self.max_readers or held >= self.max_readers_per_client:
            await self.on_error(BodyReadersBusy())(scope, receive, send)
            return
        self.readers += 1
        self._per_client[address] = held + 1
        try:
            message = await self._read(receive)
        except (PayloadTooLarge, BodyTimeout) as exc:
            await self.on_error(exc)(scope, receive, send)
            return
        finally:
            self.readers -= 1
            left = self._per_client[address] - 1
            if left:
                self._per_client[address] = left
            else:
                del self._per_client[address]

        if message["type"] == "http.request":
            scope[REQUEST_BODY] = message.get("body", b"")
        delivered = False

        def replay() -> Awaitable[Message]:
            # The whole body in one message, then the server's own receive (which only ever
            # has a disconnect to tell, for apps that watch for one while streaming).
            nonlocal delivered
            if delivered:
                return receive()
            delivered = True
            return _ready(message)

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> Message:
        """The body as one message, or the disconnect that cut it short.

        One deadline for the whole body, moved later as bytes arrive (``reschedule``), not a
        timeout entered and left around every ``receive()``: a server hands even a small body
        over in two messages (granian: the bytes, then an empty last one), and each timeout is
        a Timeout object, a timer handle pushed onto the loop's heap and cancelled. The deadline
        is the same: ``timeout`` from the start, plus a second per ``min_rate`` bytes received,
        at most ``max_timeout``; a chunk that adds no bytes, or ends the body, moves nothing."""
        limit = self.max_bytes
        chunks: list[bytes] = []
        received = 0
        started = asyncio.get_running_loop().time()  # the loop's clock, which the deadline reads
        try:
            async with asyncio.timeout_at(started + self.timeout) as deadline:
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        # The client left: the app sees the disconnect, as it would have (a 499).
                        return message
                    chunk: bytes = message.get("body", b"")
                    received += len(chunk)
                    if received > limit:
                        raise PayloadTooLarge(limit)
                    if not message.get("more_body", False):
                        if not chunks:
                            return message
                        chunks.append(chunk)
                        return {
                            "type": "http.request",
                            "body": b"".join(chunks),
                            "more_body": False,
                        }
                    chunks.append(chunk)
                    if chunk and self.min_rate:
                        allowed = min(self.timeout + received / self.min_rate, self.max_timeout)
                        deadline.reschedule(started + allowed)
        except TimeoutError:
            raise BodyTimeout() from None


async def _ready(message: Message) -> Message:
    return message
