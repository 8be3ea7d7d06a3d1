from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware import compression
from middleware.compression import BR, GZIP, CompressionMiddleware, negotiate

Headers = list[tuple[bytes, bytes]]

# Compressible text a little over four times the default minimum.
TEXT = json.dumps([{"id": n, "name": f"product {n}", "price": n * 3} for n in range(120)]).encode()
JSON_TYPE = (b"content-type", b"application/json")


@pytest.fixture
def gzip_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "brotli", None)


def answering(headers: Headers, *bodies: bytes, status: int = 200) -> tuple[ASGIApp, list[Message]]:
    """A raw app sending one start and the bodies (all but the last with more_body)."""
    messages: list[Message] = [
        {"type": "http.response.start", "status": status, "headers": headers}
    ]
    for index, body in enumerate(bodies):
        more = index < len(bodies) - 1
        messages.append({"type": "http.response.body", "body": body, "more_body": more})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(dict(message))  # the middleware may rewrite the dict it is given

    return app, messages


async def call(app: ASGIApp, accept: str | None = "gzip", method: str = "GET") -> list[Message]:
    headers = [] if accept is None else [(b"accept-encoding", accept.encode())]
    scope = {"type": "http", "method": method, "path": "/", "headers": headers}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def headers_of(start: Message) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in start["headers"]:
        found.setdefault(name, []).append(value)
    return found


def length(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", str(len(body)).encode())


async def test_one_body_is_gzipped_with_its_length_vary_and_a_weak_etag(gzip_only: None) -> None:
    app, _ = answering([JSON_TYPE, length(TEXT), (b"etag", b'"p1v3"')], TEXT)
    start, body = await call(CompressionMiddleware(app), "gzip, deflate")
    assert body == {"type": "http.response.body", "body": body["body"]}
    assert gzip.decompress(body["body"]) == TEXT
    assert len(body["body"]) < len(TEXT) // 3
    assert headers_of(start) == {
        b"content-type": [b"application/json"],
        b"etag": [b'"p1v3-gzip"'],
        b"vary": [b"Accept-Encoding"],
        b"content-encoding": [b"gzip"],
        b"content-length": [str(len(body["body"])).encode()],
    }


async def test_brotli_is_preferred_when_installed() -> None:
    brotli = pytest.importorskip("brotli")
    app, _ = answering([JSON_TYPE], TEXT)
    start, body = await call(CompressionMiddleware(app), "gzip, deflate, br, zstd")
    assert headers_of(start)[b"content-encoding"] == [b"br"]
    assert brotli.decompress(body["body"]) == TEXT


async def test_gzip_when_brotli_is_missing(gzip_only: None) -> None:
    middleware = CompressionMiddleware(answering([JSON_TYPE], TEXT)[0])
    assert middleware.codings == (GZIP,)
    start, body = await call(middleware, "br, gzip")
    assert headers_of(start)[b"content-encoding"] == [b"gzip"]
    assert gzip.decompress(body["body"]) == TEXT


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("gzip, deflate, br", BR),
        ("br;q=0.5, gzip;q=0.5", BR),  # a tie goes to the server's preference
        ("gzip;q=1, br;q=0.5", GZIP),
        ("GZIP;Q=0.9, Br;q=0.8", GZIP),
        ("br;q=0, gzip", GZIP),
        ("br;q=0, *", GZIP),
        ("*", BR),
        ("*;q=0.2, br;q=0.1", GZIP),
        ("x-gzip", GZIP),
        ("gzip ; level=1 ; q=0.5", GZIP),
        ("gzip;q=0.001", GZIP),
        ("br, br;q=0", BR),  # the first rating of a coding counts
        ("identity;q=0, gzip", GZIP),
        ("gzip;q=0", None),
        ("gzip;q=0.000, br;q=0", None),
        ("*;q=0", None),
        ("identity", None),
        ("identity;q=0", None),
        ("deflate, zstd", None),
        ("gzip;q=0.5, identity", None),  # the client would rather have it as it is
        ("gzip;q=2", None),  # an invalid q refuses its coding
        ("gzip;q=0.5000", None),
        ("gzip;q=abc", None),
        ("", None),
        (",;,", None),
    ],
)
def test_negotiation_follows_q_values(accept: str, expected: bytes | None) -> None:
    assert negotiate(accept.encode(), (BR, GZIP)) == expected


@pytest.mark.parametrize(("accept", "expected"), [("br", None), ("br, gzip;q=0.1", GZIP)])
def test_negotiation_offers_only_what_is_available(accept: str, expected: bytes | None) -> None:
    assert negotiate(accept.encode(), (GZIP,)) == expected


async def test_end_to_end_with_starlette_and_httpx(gzip_only: None) -> None:
    payload = json.loads(TEXT)

    async def products(request: Request) -> Response:
        return JSONResponse(payload)

    middleware = CompressionMiddleware(Starlette(routes=[Route("/products", products)]))
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        async with http.stream("GET", "/products", headers={"accept-encoding": "gzip"}) as raw:
            wire = b"".join([chunk async for chunk in raw.aiter_raw()])
        decoded = await http.get("/products", headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert int(raw.headers["content-length"]) == len(wire)
    assert json.loads(gzip.decompress(wire)) == payload
    assert decoded.json() == payload


@pytest.mark.parametrize("declared", [True, False])
async def test_a_small_body_passes_byte_for_byte_but_varies(declared: bool) -> None:
    small = os.urandom(1023)
    headers = [(b"content-type", b"text/plain")] + ([length(small)] if declared else [])
    app, messages = answering(headers, small)
    start, body = await call(CompressionMiddleware(app, minimum_size=1024))
    assert start["headers"] == [*headers, (b"vary", b"Accept-Encoding")]
    assert body["body"] == small
    assert body.get("more_body", False) is False
    assert messages[0]["headers"] == headers  # the app's list is not changed in place


async def test_a_declared_small_body_is_not_held_back() -> None:
    sent_before_body: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [length(b"tiny")]})
        sent_before_body.extend(sent)
        await send({"type": "http.response.body", "body": b"tiny"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"accept-encoding", b"gzip")],
    }
    await CompressionMiddleware(app)(scope, receive, send)
    assert [message["type"] for message in sent_before_body] == ["http.response.start"]
    assert sent[1]["body"] == b"tiny"


async def test_a_streamed_body_that_stays_small_passes_byte_for_byte() -> None:
    parts = [b"a" * 300, b"b" * 300, b"c" * 300]
    app, _ = answering([(b"content-type", b"text/plain")], *parts)
    start, *bodies = await call(CompressionMiddleware(app, minimum_size=1024))
    assert headers_of(start) == {b"content-type": [b"text/plain"], b"vary": [b"Accept-Encoding"]}
    assert [body["body"] for body in bodies] == [b"".join(parts)]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(b"content-encoding", b"br"), JSON_TYPE], 200),
        ([(b"content-type", b"text/event-stream")], 200),
        ([(b"content-type", b"image/png")], 200),
        ([(b"content-type", b"video/mp4")], 200),
        ([(b"content-type", b"audio/ogg")], 200),
        ([(b"content-type", b"application/zip")], 200),
        ([(b"content-type", b"application/gzip")], 200),
        ([(b"content-type", b"Font/WOFF2; foo=bar")], 200),
        ([JSON_TYPE, (b"cache-control", b"public, No-Transform")], 200),
        ([JSON_TYPE], 204),
        ([JSON_TYPE, (b"content-range", b"bytes 0-4799/9000")], 206),
    ],
)
async def test_left_alone(headers: Headers, status: int) -> None:
    app, messages = answering(headers, TEXT[:2400], TEXT[2400:], status=status)
    assert await call(CompressionMiddleware(app), "gzip, br") == messages


async def test_an_event_stream_is_forwarded_message_by_message() -> None:
    events = [b"data: 1\n\n", b"data: 2\n\n", b""]
    app, messages = answering([(b"content-type", b"text/event-stream")], *events)
    assert await call(CompressionMiddleware(app, minimum_size=0)) == messages


async def test_a_304_only_gets_vary() -> None:
    headers = [(b"etag", b'"p1v3"')]
    app, _ = answering(headers, b"", status=304)
    start, body = await call(CompressionMiddleware(app))
    assert start["headers"] == [(b"etag", b'"p1v3"'), (b"vary", b"Accept-Encoding")]
    assert body["body"] == b""


async def test_svg_is_text_and_compressed(gzip_only: None) -> None:
    app, _ = answering([(b"content-type", b"image/svg+xml")], TEXT)
    start, body = await call(CompressionMiddleware(app))
    assert headers_of(start)[b"content-encoding"] == [b"gzip"]
    assert gzip.decompress(body["body"]) == TEXT


async def test_incompressible_bytes_are_sent_as_they_are() -> None:
    noise = os.urandom(4096)
    app, _ = answering([(b"content-type", b"application/octet-stream"), length(noise)], noise)
    start, body = await call(CompressionMiddleware(app), "gzip, br")
    assert b"content-encoding" not in headers_of(start)
    assert headers_of(start)[b"content-length"] == [b"4096"]
    assert headers_of(start)[b"vary"] == [b"Accept-Encoding"]
    assert body["body"] == noise


@pytest.mark.parametrize(
    ("apps", "merged"),
    [
        ([(b"vary", b"Origin")], [b"Origin, Accept-Encoding"]),
        ([(b"vary", b"origin, accept-encoding")], [b"origin, accept-encoding"]),
        ([(b"vary", b"Origin"), (b"vary", b"Accept-Encoding")], [b"Origin", b"Accept-Encoding"]),
        ([(b"vary", b"*")], [b"*"]),
    ],
)
@pytest.mark.parametrize("body", [TEXT, b"{}"])
async def test_vary_is_merged_not_duplicated(
    apps: Headers, merged: list[bytes], body: bytes
) -> None:
    app, _ = answering([JSON_TYPE, *apps], body)
    start, _ = await call(CompressionMiddleware(app))
    assert headers_of(start)[b"vary"] == merged


async def test_weak_etags_stay_as_they_are_and_accept_ranges_goes(gzip_only: None) -> None:
    headers = [JSON_TYPE, (b"etag", b'W/"p1v3"'), (b"accept-ranges", b"bytes")]
    app, _ = answering(headers, TEXT)
    start, _ = await call(CompressionMiddleware(app))
    found = headers_of(start)
    assert found[b"etag"] == [b'W/"p1v3"']
    assert b"accept-ranges" not in found


def decompressor(coding: bytes) -> Any:
    if coding == BR:
        return pytest.importorskip("brotli").Decompressor().process
    return zlib.decompressobj(31).decompress


@pytest.mark.parametrize("coding", [GZIP, BR])
async def test_a_streamed_body_is_buffered_to_the_minimum_then_flushed_per_chunk(
    coding: bytes,
) -> None:
    decompress = decompressor(coding)
    parts = [TEXT[start : start + 300] for start in range(0, 3000, 300)]
    app, _ = answering([JSON_TYPE, length(b"".join(parts)), (b"etag", b'"s1"')], *parts)
    start, *bodies = await call(CompressionMiddleware(app, minimum_size=1024), coding.decode())
    assert headers_of(start) == {
        b"content-type": [b"application/json"],
        b"etag": [b'"s1-' + coding + b'"'],
        b"vary": [b"Accept-Encoding"],
        b"content-encoding": [coding],
    }
    # 900 bytes are held back; the fourth part reaches the minimum, then one message per part.
    assert len(bodies) == 7
    assert [body.get("more_body", False) for body in bodies] == [True] * 6 + [False]
    received = b""
    for index, body in enumerate(bodies):
        received += decompress(body["body"])
        # Flushed: each message decodes to everything sent so far, nothing held in the encoder.
        assert received == b"".join(parts[: 4 + index])


async def test_trailers_follow_a_compressed_body(gzip_only: None) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [JSON_TYPE],
                    "trailers": True})  # fmt: skip
        await send({"type": "http.response.body", "body": TEXT})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    start, body, trailers = await call(CompressionMiddleware(app))
    assert start["trailers"] is True
    assert gzip.decompress(body["body"]) == TEXT
    assert trailers == {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]}


async def test_a_pathsend_releases_the_held_start_unchanged() -> None:
    headers = [(b"content-type", b"text/css"), (b"content-length", b"5000")]
    messages: list[Message] = [
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.pathsend", "path": "/srv/static/site.css"},
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(dict(message))

    assert await call(CompressionMiddleware(app)) == messages


@pytest.mark.parametrize(
    ("accept", "method", "scope_type"),
    [(None, "GET", "http"), ("gzip", "HEAD", "http"), ("identity, deflate", "GET", "http"),
     ("gzip", "GET", "websocket")],
)  # fmt: skip
async def test_nothing_to_do_hands_back_the_inner_awaitable(
    accept: str | None, method: str, scope_type: str
) -> None:
    handed: list[Awaitable[None]] = []

    def app(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        awaitable = asyncio.sleep(0)
        handed.append(awaitable)
        return awaitable

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    headers = [] if accept is None else [(b"accept-encoding", accept.encode())]
    scope = {"type": scope_type, "method": method, "path": "/", "headers": headers}
    awaitable = CompressionMiddleware(app)(scope, receive, send)
    assert awaitable is handed[0]
    await awaitable


async def test_negotiations_are_cached_within_a_bound(gzip_only: None) -> None:
    app, _ = answering([JSON_TYPE], TEXT)
    middleware = CompressionMiddleware(app)
    for n in range(600):
        start, _ = await call(middleware, f"gzip;q=0.{n % 1000:03d}")
        expected = [b"gzip"] if n else None
        assert headers_of(start).get(b"content-encoding") == expected
    assert 0 < len(middleware._choices) <= 256


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"minimum_size": -1}, "minimum_size"),
        ({"minimum_size": True}, "minimum_size"),
        ({"minimum_size": 1.5}, "minimum_size"),
        ({"gzip_level": 0}, "gzip_level"),
        ({"gzip_level": 10}, "gzip_level"),
        ({"brotli_quality": 12}, "brotli_quality"),
        ({"brotli_quality": -1}, "brotli_quality"),
    ],
)
def test_rejects_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CompressionMiddleware(Starlette(), **options)
