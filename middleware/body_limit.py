"""Refuse request bodies larger than a limit, declared or streamed."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import BadContentLength, OnError, PayloadTooLarge

_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_FRAMED_BY_HEADERS = frozenset(("1.0", "1.1"))
# More digits than this is beyond any limit, and keeps int() away from huge strings.
_MAX_DIGITS = 18


class BodyLimitMiddleware:
    """Answer a too-large request with `on_error(PayloadTooLarge(max_bytes))`.

    A declared Content-Length over the limit (or an invalid one: `BadContentLength`) is answered
    before the app runs. Bodies without a trustworthy length are counted as the app reads them:
    the receive callable raises PayloadTooLarge once the count passes the limit. The app's own
    exception handler usually renders that; if it escapes before the response started, this
    middleware answers it, and if the response had already started it propagates.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, on_error: OnError) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        if not callable(on_error):
            raise TypeError("on_error must be callable")
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine unless a body has to be counted: see SecurityHeadersMiddleware.
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
                # every GET; skipping the wrappers saves a third of a microsecond.
                return self.app(scope, receive, send)
        else:
            # bytes.isdigit() accepts ASCII digits only: no sign, space or underscore.
            if not declared.isdigit():
                return self.on_error(BadContentLength())(scope, receive, send)
            if len(declared) > _MAX_DIGITS or int(declared) > self.max_bytes:
                return self.on_error(PayloadTooLarge(self.max_bytes))(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        received = 0
        started = False

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        def send_tracking(message: Message) -> Awaitable[None]:
            nonlocal started
            started = True
            return send(message)

        try:
            await self.app(scope, receive_limited, send_tracking)
        except PayloadTooLarge as exc:
            if started:
                raise
            await self.on_error(exc)(scope, receive, send)
