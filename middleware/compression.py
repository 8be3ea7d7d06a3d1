"""Compress response bodies with brotli or gzip, as the client's Accept-Encoding prefers."""

from __future__ import annotations

import importlib
import re
import zlib
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache, partial
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:
    # Optional: without it, gzip only. Imported by name because it ships no type information.
    brotli: Any = importlib.import_module("brotli")
except ImportError:
    brotli = None

Header = tuple[bytes, bytes]
Encoder = tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[], bytes]]

BR = b"br"
GZIP = b"gzip"
# What a compressed answer's ETag ends with; precondition checks take it off (see _encoded).
CODING_SUFFIXES = ('-br"', '-gzip"')
_ACCEPT_ENCODING = b"accept-encoding"
_CONTENT_ENCODING = b"content-encoding"
_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"
_CONTENT_RANGE = b"content-range"
_CACHE_CONTROL = b"cache-control"
_ACCEPT_RANGES = b"accept-ranges"
_ETAG = b"etag"
_VARY = b"vary"
_VARY_ACCEPT_ENCODING = (_VARY, b"Accept-Encoding")
_QVALUE = re.compile(rb"0(\.[0-9]{0,3})?|1(\.0{0,3})?").fullmatch
# Accept-Encoding values are few (one per browser version): the negotiation is cached.
_MAX_CACHED_CHOICES = 256
_UNKNOWN = b""
_MAX_DIGITS = 18

_UNCOMPRESSED_STATUSES = frozenset((204, 206))
_NOT_MODIFIED = 304
_COMPRESSED_TYPES = frozenset(
    (
        b"application/gzip",
        b"application/x-gzip",
        b"application/zip",
        b"application/zstd",
        b"application/x-bzip2",
        b"application/x-xz",
        b"application/x-7z-compressed",
        b"application/vnd.rar",
        b"application/x-rar-compressed",
        b"application/x-brotli",
        b"application/font-woff",
        b"font/woff",
        b"font/woff2",
        # Not compressed data, but each event must reach the client at once, unbuffered.
        b"text/event-stream",
    )
)
_COMPRESSED_PREFIXES = (b"image/", b"video/", b"audio/")
_TEXT_IMAGES = frozenset((b"image/svg+xml",))


def negotiate(accept_encoding: bytes, offered: tuple[bytes, ...]) -> bytes | None:
    """The coding of `offered` (in the server's order of preference) the client rates highest.

    q-values follow RFC 9110 12.4.2; an invalid one refuses its coding. ``*`` rates every
    coding not listed by name; an explicit ``identity`` rated above the best coding means the
    client would rather have the body as it is.
    """
    qualities: dict[bytes, float] = {}
    for item in accept_encoding.lower().split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip()
        if not coding or coding in qualities:
            continue
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip() == b"q":
                value = value.strip()
                quality = float(value) if _QVALUE(value) else 0.0
        qualities[coding] = quality
    if GZIP not in qualities and b"x-gzip" in qualities:
        qualities[GZIP] = qualities[b"x-gzip"]  # the same coding (RFC 9110 8.4.1.3)
    anything = qualities.get(b"*", 0.0)
    best: bytes | None = None
    best_quality = 0.0
    for coding in offered:
        quality = qualities.get(coding, anything)
        if quality > best_quality:
            best, best_quality = coding, quality
    if best is not None and qualities.get(b"identity", 0.0) > best_quality:
        return None
    return best


def _with_vary(raw: Iterable[Header]) -> list[Header]:
    """A copy of the headers with ``accept-encoding`` in Vary, added once."""
    headers = list(raw)
    first = None
    for index, (name, value) in enumerate(headers):
        if name == _VARY:
            listed = [token.strip() for token in value.lower().split(b",")]
            if _ACCEPT_ENCODING in listed or b"*" in listed:
                return headers
            if first is None:
                first = index
    if first is None:
        headers.append(_VARY_ACCEPT_ENCODING)
    else:
        headers[first] = (_VARY, headers[first][1] + b", Accept-Encoding")
    return headers


@lru_cache(maxsize=64)  # a handful of distinct content types in practice
def _compressible(media_type: bytes) -> bool:
    media_type = media_type.partition(b";")[0].strip().lower()
    if media_type in _COMPRESSED_TYPES:
        return False
    return not media_type.startswith(_COMPRESSED_PREFIXES) or media_type in _TEXT_IMAGES


def _no_transform(cache_control: bytes) -> bool:
    return b"no-transform" in (d.strip() for d in cache_control.lower().split(b","))


class CompressionMiddleware:
    """Compress responses of at least `minimum_size` bytes for clients that accept it.

    brotli is preferred when the module is installed, gzip otherwise. Left alone: HEAD
    requests, 204/206 answers, bodies already encoded, compressed media (images, audio, video,
    archives, woff), event streams, ``Cache-Control: no-transform`` and smaller bodies, which
    pass byte for byte. A compressed answer gets Content-Encoding, the right Content-Length
    (none when streamed), ``Vary: Accept-Encoding`` and a strong ETag of its own: ``"p1v3"``
    becomes ``"p1v3-gzip"`` (``CODING_SUFFIXES``), since its bytes are no longer those the tag
    named (RFC 9110 8.8.3); a weak tag stays as it is. Vary is also added when a body was too
    small, and to 304s: the representation still depends on Accept-Encoding.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        minimum_size: int = 1024,
        gzip_level: int = 6,
        brotli_quality: int = 4,
    ) -> None:
        for name, value, low, high in (
            ("minimum_size", minimum_size, 0, None),
            ("gzip_level", gzip_level, 1, 9),
            ("brotli_quality", brotli_quality, 0, 11),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < low
                or (high is not None and value > high)
            ):
                bounds = f"{low}-{high}" if high is not None else f">= {low}"
                raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
        self.app = app
        self.minimum_size = minimum_size
        self.gzip_level = gzip_level
        self.brotli_quality = brotli_quality
        self.codings: tuple[bytes, ...] = (BR, GZIP) if brotli is not None else (GZIP,)
        self._choices: dict[bytes, bytes | None] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: the work happens in the send wrapper, nothing after the app returns.
        if scope["type"] != "http" or scope["method"] == "HEAD":
            return self.app(scope, receive, send)
        accept: bytes | None = None
        for name, value in scope["headers"]:
            if name == _ACCEPT_ENCODING:
                accept = value if accept is None else accept + b"," + value
        if accept is None:
            return self.app(scope, receive, send)
        coding = self._choices.get(accept, _UNKNOWN)
        if coding == _UNKNOWN:
            coding = negotiate(accept, self.codings)
            if len(self._choices) >= _MAX_CACHED_CHOICES:
                self._choices.clear()
            self._choices[accept] = coding
        if coding is None:
            return self.app(scope, receive, send)
        return self.app(scope, receive, _Responder(self, coding, send).send)

    def compress(self, coding: bytes, body: bytes) -> bytes:
        if coding == BR:
            compressed: bytes = brotli.compress(body, quality=self.brotli_quality)
            return compressed
        return zlib.compress(body, self.gzip_level, wbits=31)

    def stream(self, coding: bytes) -> Encoder:
        """(compress, flush, finish) of an incremental compressor."""
        if coding == BR:
            compressor = brotli.Compressor(quality=self.brotli_quality)
            return compressor.process, compressor.flush, compressor.finish
        gzip = zlib.compressobj(self.gzip_level, zlib.DEFLATED, 31)
        return gzip.compress, partial(gzip.flush, zlib.Z_SYNC_FLUSH), gzip.flush


_DECIDING, _PASSING, _HOLDING, _STREAMING = range(4)


class _Responder:
    """The send wrapper of one response: holds the start until the body decides its fate."""

    __slots__ = ("buffered", "coding", "compress", "downstream", "finish", "flush", "middleware",
                 "size", "start", "state")  # fmt: skip

    compress: Callable[[bytes], bytes]
    flush: Callable[[], bytes]
    finish: Callable[[], bytes]

    def __init__(self, middleware: CompressionMiddleware, coding: bytes, send: Send) -> None:
        self.middleware = middleware
        self.coding = coding
        self.downstream = send
        self.state = _DECIDING
        self.start: Message = {}
        self.buffered: list[bytes] = []
        self.size = 0

    def send(self, message: Message) -> Awaitable[None]:
        state = self.state
        if state == _PASSING:
            return self.downstream(message)
        if state == _HOLDING:
            return self._hold(message)
        if state == _STREAMING:
            return self._stream(message)
        if message["type"] == "http.response.start":
            return self._decide(message)
        return self.downstream(message)

    def _decide(self, start: Message) -> Awaitable[None]:
        self.state = _PASSING
        status = start["status"]
        headers = start.get("headers", ())
        if status in _UNCOMPRESSED_STATUSES:
            return self.downstream(start)
        if status == _NOT_MODIFIED:
            start["headers"] = _with_vary(headers)
            return self.downstream(start)
        declared: int | None = None
        varies = False
        for name, value in headers:
            if name == _CONTENT_TYPE:
                if not _compressible(value):
                    return self.downstream(start)
            elif name == _CONTENT_LENGTH:
                if value.isdigit() and len(value) <= _MAX_DIGITS:
                    declared = int(value)
            elif name == _VARY:
                varies = True
            elif name in (_CONTENT_ENCODING, _CONTENT_RANGE) or (
                name == _CACHE_CONTROL and _no_transform(value)
            ):
                return self.downstream(start)
        if declared is not None and declared < self.middleware.minimum_size:
            # Known to be too small: no need to hold anything back.
            start["headers"] = _with_vary(headers) if varies else [*headers, _VARY_ACCEPT_ENCODING]
            return self.downstream(start)
        self.state = _HOLDING
        self.start = start
        return self._held()

    async def _held(self) -> None:
        return None

    async def _hold(self, message: Message) -> None:
        send = self.downstream
        if message["type"] != "http.response.body":
            # Not a body we can rewrite (a pathsend, a zero-copy send): let it all go as it is.
            self.state = _PASSING
            await send(self.start)
            if self.buffered:
                held = b"".join(self.buffered)
                await send({"type": "http.response.body", "body": held, "more_body": True})
            await send(message)
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.buffered or more:
            self.buffered.append(body)
            self.size += len(body)
            if more and self.size < self.middleware.minimum_size:
                return
            body = b"".join(self.buffered)
            self.buffered = []
        if more:
            await self._start_stream(body)
            return
        self.state = _PASSING
        start = self.start
        if len(body) >= self.middleware.minimum_size:
            compressed = self.middleware.compress(self.coding, body)
            # Incompressible bytes under a compressible type: the original is smaller.
            if len(compressed) < len(body):
                start["headers"] = self._encoded(start.get("headers", ()), len(compressed))
                await send(start)
                await send({"type": "http.response.body", "body": compressed})
                return
        start["headers"] = _with_vary(start.get("headers", ()))
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def _start_stream(self, body: bytes) -> None:
        self.state = _STREAMING
        self.compress, self.flush, self.finish = self.middleware.stream(self.coding)
        start = self.start
        start["headers"] = self._encoded(start.get("headers", ()), None)
        await self.downstream(start)
        # Flushed per chunk: a streamed body is streamed so its parts arrive early.
        chunk = self.compress(body) + self.flush()
        await self.downstream({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _stream(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            await self.downstream(message)
            return
        body = message.get("body", b"")
        if message.get("more_body", False):
            chunk = self.compress(body) + self.flush()
            await self.downstream({"type": "http.response.body", "body": chunk, "more_body": True})
            return
        chunk = self.compress(body) + self.finish()
        self.state = _PASSING  # trailers, if any, follow as they are
        await self.downstream({"type": "http.response.body", "body": chunk})

    def _encoded(self, raw: Iterable[Header], length: int | None) -> list[Header]:
        headers: list[Header] = []
        for name, value in raw:
            if name in (_CONTENT_LENGTH, _ACCEPT_RANGES):
                # A byte range would count bytes of the encoded body, which differs per coding.
                continue
            if name == _ETAG and value.startswith(b'"') and value.endswith(b'"'):
                # Other bytes, so another strong validator (RFC 9110 8.8.3): the coding goes
                # into the tag, and the server's precondition checks take it off again, so an
                # If-Match with what a client read compressed still names the resource.
                value = value[:-1] + b"-" + self.coding + b'"'
            headers.append((name, value))
        headers = _with_vary(headers)
        headers.append((_CONTENT_ENCODING, self.coding))
        if length is not None:
            headers.append((_CONTENT_LENGTH, str(length).encode("ascii")))
        return headers
