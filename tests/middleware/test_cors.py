from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.cors import CorsMiddleware, normalise_origin
from middleware.types import CorsRejected

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://other.example.com"
EXPOSED = "etag, location, retry-after, ratelimit, ratelimit-policy, x-request-id"
ALLOWED_HEADERS = (
    "authorization, content-type, idempotency-key, if-match, if-none-match, x-api-key, "
    "x-csrf-token, x-request-id"
)
HEADERS_DETAIL = f"Allowed request headers: {ALLOWED_HEADERS}."
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def on_error(exc: Exception) -> ASGIApp:
    # The server's renderer turns it into a 403 problem (tests/test_edge_wiring.py).
    assert isinstance(exc, CorsRejected)
    return JSONResponse({"refused": str(exc)}, status_code=403)


class Recorder:
    """A Starlette app that counts its calls; /vary answers with the Vary the test asks for."""

    def __init__(self) -> None:
        self.calls = 0

        async def item(request: Request) -> Response:
            self.calls += 1
            return JSONResponse({"ok": True}, headers={"etag": '"i1v1"'})

        async def vary(request: Request) -> Response:
            self.calls += 1
            return PlainTextResponse("ok", headers={"vary": request.query_params["vary"]})

        async def options(request: Request) -> Response:
            self.calls += 1
            return Response(status_code=200, headers={"allow": "GET, OPTIONS"})

        self.app = Starlette(
            routes=[
                Route("/item", item, methods=["GET", "POST"]),
                Route("/vary", vary),
                Route("/options", options, methods=["OPTIONS"]),
            ]
        )


def client(app: ASGIApp, **options: Any) -> httpx.AsyncClient:
    options.setdefault("allow_origins", [APP_ORIGIN])
    options.setdefault("on_error", on_error)
    transport = httpx.ASGITransport(app=CorsMiddleware(app, **options))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-") or name == "vary"
    }


async def test_a_request_without_origin_is_untouched() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.get("/item")
    bare = httpx.ASGITransport(app=recorder.app)
    async with httpx.AsyncClient(transport=bare, base_url="http://test") as http:
        plain = await http.get("/item")
    assert response.headers.multi_items() == plain.headers.multi_items()
    assert cors_headers(response) == {}


async def test_an_allowed_origin_is_named_and_the_answer_varies_by_origin() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.get("/item", headers={"origin": APP_ORIGIN})
    assert response.json() == {"ok": True}
    assert cors_headers(response) == {
        "access-control-allow-origin": APP_ORIGIN,
        "access-control-expose-headers": EXPOSED,
        "vary": "Origin",
    }
    assert response.headers["etag"] == '"i1v1"'


async def test_credentials_name_the_exact_origin() -> None:
    recorder = Recorder()
    async with client(recorder.app, allow_credentials=True) as http:
        response = await http.post("/item", headers={"origin": APP_ORIGIN})
    assert response.headers.get_list("access-control-allow-origin") == [APP_ORIGIN]
    assert response.headers.get_list("access-control-allow-credentials") == ["true"]


async def test_a_foreign_origin_runs_but_gets_no_allow_origin() -> None:
    recorder = Recorder()
    async with client(recorder.app, allow_credentials=True) as http:
        response = await http.post("/item", headers={"origin": OTHER_ORIGIN})
    assert response.status_code == 200
    assert recorder.calls == 1
    assert cors_headers(response) == {"vary": "Origin"}


@pytest.mark.parametrize(
    ("apps_vary", "merged"),
    [
        ("Accept-Encoding", "Accept-Encoding, Origin"),
        ("accept-encoding, ORIGIN", "accept-encoding, ORIGIN"),
        ("*", "*"),
    ],
)
async def test_vary_is_merged_not_duplicated(apps_vary: str, merged: str) -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        allowed = await http.get(
            "/vary", params={"vary": apps_vary}, headers={"origin": APP_ORIGIN}
        )
        foreign = await http.get(
            "/vary", params={"vary": apps_vary}, headers={"origin": "http://x"}
        )
    assert allowed.headers.get_list("vary") == [merged]
    assert foreign.headers.get_list("vary") == [merged]


async def test_the_apps_header_list_is_not_mutated() -> None:
    shared = PlainTextResponse("ok", headers={"vary": "Accept-Encoding"})
    before = list(shared.raw_headers)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await shared(scope, receive, send)

    async with client(app) as http:
        response = await http.get("/", headers={"origin": APP_ORIGIN})
    assert response.headers["vary"] == "Accept-Encoding, Origin"
    assert shared.raw_headers == before


def preflight(
    method: str = "PUT", headers: str | None = "content-type, if-match"
) -> dict[str, str]:
    asked = {"origin": APP_ORIGIN, "access-control-request-method": method}
    if headers is not None:
        asked["access-control-request-headers"] = headers
    return asked


async def test_an_allowed_preflight_is_answered_here() -> None:
    recorder = Recorder()
    async with client(recorder.app, allow_credentials=True, max_age=300) as http:
        response = await http.options("/item", headers=preflight())
    assert (response.status_code, response.content) == (204, b"")
    assert recorder.calls == 0
    assert cors_headers(response) == {
        "access-control-allow-origin": APP_ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
        "access-control-allow-headers": ALLOWED_HEADERS,
        "access-control-max-age": "300",
        "vary": PREFLIGHT_VARY,
    }


@pytest.mark.parametrize(
    "asked",
    [
        preflight(headers=None),
        preflight(headers=""),
        preflight(headers="Content-Type,IF-MATCH , x-request-id,"),
        # A browser sends these methods whatever Allow-Methods says.
        preflight(method="HEAD", headers="authorization"),
    ],
)
async def test_preflight_header_lists_are_read_leniently(asked: dict[str, str]) -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.options("/item", headers=asked)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize(
    ("asked", "detail"),
    [
        ({**preflight(), "origin": OTHER_ORIGIN}, "The origin is not allowed to call this API."),
        (preflight(method="TRACE"), "Allowed methods: GET, POST, PUT, PATCH, DELETE."),
        (preflight(method="put"), "Allowed methods: GET, POST, PUT, PATCH, DELETE."),
        (
            preflight(headers="content-type, x-debug"),
            f"Allowed request headers: {ALLOWED_HEADERS}.",
        ),
    ],
)
async def test_a_refused_preflight_is_answered_by_on_error_without_allow_headers(
    asked: dict[str, str], detail: str
) -> None:
    recorder = Recorder()
    async with client(recorder.app, allow_credentials=True) as http:
        response = await http.options("/item", headers=asked)
    assert response.status_code == 403
    assert recorder.calls == 0
    assert response.json() == {"refused": detail}
    assert cors_headers(response) == {"vary": PREFLIGHT_VARY}


async def test_options_without_a_requested_method_is_not_a_preflight() -> None:
    recorder = Recorder()
    async with client(recorder.app) as http:
        response = await http.options("/options", headers={"origin": APP_ORIGIN})
    assert recorder.calls == 1
    assert (response.status_code, response.headers["allow"]) == (200, "GET, OPTIONS")
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "access-control-allow-methods" not in response.headers


async def test_a_wildcard_answers_star_and_does_not_vary() -> None:
    recorder = Recorder()
    async with client(recorder.app, allow_origins=["*"]) as http:
        simple = await http.get("/item", headers={"origin": "https://anyone.example"})
        asked = await http.options("/item", headers={**preflight(), "origin": "http://x.test"})
    assert cors_headers(simple) == {
        "access-control-allow-origin": "*",
        "access-control-expose-headers": EXPOSED,
    }
    assert asked.status_code == 204
    assert asked.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in asked.headers


async def test_configured_lists_are_normalised_and_empty_lists_send_no_header() -> None:
    recorder = Recorder()
    options = {
        "allow_origins": ["HTTPS://App.Example.com:443/"],
        "allow_methods": ["get", "Put", "PUT"],
        "allow_headers": ["X-Custom"],
        "expose_headers": [],
    }
    async with client(recorder.app, **options) as http:
        simple = await http.get("/item", headers={"origin": APP_ORIGIN})
        asked = await http.options("/item", headers=preflight(headers="x-custom"))
    assert cors_headers(simple) == {"access-control-allow-origin": APP_ORIGIN, "vary": "Origin"}
    assert asked.status_code == 204
    assert asked.headers["access-control-allow-methods"] == "GET, PUT"
    assert asked.headers["access-control-allow-headers"] == "x-custom"


def raw_scope(headers: list[tuple[bytes, bytes]], method: str = "GET") -> Scope:
    return {"type": "http", "method": method, "path": "/", "headers": headers}


async def receive() -> Message:
    return {"type": "http.disconnect"}


async def send(message: Message) -> None:
    return None


@pytest.mark.parametrize(
    ("origins", "scope"),
    [
        ([APP_ORIGIN], raw_scope([(b"accept", b"*/*")])),
        ([APP_ORIGIN], {"type": "websocket", "path": "/", "headers": [(b"origin", b"http://x")]}),
        ([], raw_scope([(b"origin", APP_ORIGIN.encode())])),
        ([], raw_scope([(b"origin", APP_ORIGIN.encode())], method="OPTIONS")),
    ],
)
async def test_nothing_to_do_hands_back_the_inner_awaitable(
    origins: list[str], scope: Scope
) -> None:
    handed: list[Awaitable[None]] = []

    def app(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        awaitable = asyncio.sleep(0)
        handed.append(awaitable)
        return awaitable

    awaitable = CorsMiddleware(app, allow_origins=origins, on_error=on_error)(scope, receive, send)
    assert awaitable is handed[0]
    await awaitable


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTPS://App.Example.COM/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("https://app.example.com:8443", "https://app.example.com:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[0:0::1]:8080", "http://[::1]:8080"),
    ],
)
def test_origins_are_normalised_as_browsers_send_them(given: str, normal: str) -> None:
    assert normalise_origin(given) == normal


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "app.example.com",
        "https://app.example.com/path",
        "https://app.example.com//",
        "https://app.example.com?x=1",
        "https://app.example.com#top",
        "https://user@app.example.com",
        "ftp://app.example.com",
        "null",
        "https://",
        " https://app.example.com",
        "https://app example.com",
        "https://bücher.example",
        "https://app.example.com:0",
        "https://app.example.com:70000",
        "https://[::zz]",
    ],
)
def test_rejects_anything_but_an_exact_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        CorsMiddleware(Starlette(), allow_origins=[origin], on_error=on_error)


def test_a_wildcard_is_refused_with_credentials_and_must_stand_alone() -> None:
    with pytest.raises(ValueError, match="credentials"):
        CorsMiddleware(Starlette(), allow_origins=["*"], on_error=on_error, allow_credentials=True)
    with pytest.raises(ValueError, match="alone"):
        CorsMiddleware(Starlette(), allow_origins=["*", APP_ORIGIN], on_error=on_error)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"allow_origins": APP_ORIGIN}, TypeError),
        ({"allow_credentials": "yes"}, TypeError),
        ({"allow_methods": "GET"}, TypeError),
        ({"allow_methods": ["GET", "BAD METHOD"]}, ValueError),
        ({"allow_headers": ["*"]}, ValueError),
        ({"expose_headers": ["x-ok", "no:colon"]}, ValueError),
        ({"max_age": -1}, ValueError),
        ({"max_age": True}, ValueError),
        ({"on_error": None}, TypeError),
    ],
)
def test_rejects_bad_options(options: dict[str, Any], error: type[Exception]) -> None:
    options.setdefault("allow_origins", [APP_ORIGIN])
    options.setdefault("on_error", on_error)
    with pytest.raises(error):
        CorsMiddleware(Starlette(), **options)
