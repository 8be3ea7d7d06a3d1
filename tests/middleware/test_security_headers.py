from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from middleware import SecurityHeadersMiddleware

API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = "default-src 'self'; script-src 'self' https://cdn.example"
EXPECTED = {
    "content-security-policy": API_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "origin-agent-cluster": "?1",
    "x-dns-prefetch-control": "off",
    "x-download-options": "noopen",
    "x-permitted-cross-domain-policies": "none",
    "x-xss-protection": "0",
}


async def data(request: Request) -> Response:
    return JSONResponse({"ok": True}, headers={"cache-control": "public, max-age=60"})


async def docs(request: Request) -> Response:
    return HTMLResponse("<html></html>", headers={"content-security-policy": DOCS_CSP})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


def client(**options: int | bool) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/data", data), Route("/docs", docs), Route("/boom", boom)])
    middleware = SecurityHeadersMiddleware(app, **options)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize("path", ["/data", "/nowhere", "/boom"])
async def test_every_answer_gets_the_set_once(path: str) -> None:
    async with client() as http:
        response = await http.get(path)
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value], name
    assert "strict-transport-security" not in response.headers


async def test_a_csp_set_by_the_response_is_kept() -> None:
    async with client() as http:
        response = await http.get("/docs")
    assert response.headers.get_list("content-security-policy") == [DOCS_CSP]
    assert response.headers["x-frame-options"] == "DENY"


async def test_hsts_only_when_asked() -> None:
    async with client(hsts=True, hsts_max_age=600) as http:
        response = await http.get("/data")
    assert response.headers["strict-transport-security"] == "max-age=600; includeSubDomains"


@pytest.mark.parametrize(
    "credentials",
    [{"authorization": "Bearer abc"}, {"x-api-key": "hp_1_secret"}, {"cookie": "session=1"}],
)
async def test_credentialed_requests_get_no_store_in_place_of_the_apps_cache_control(
    credentials: dict[str, str],
) -> None:
    async with client() as http:
        response = await http.get("/data", headers=credentials)
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_credentialed_requests_get_no_store_even_on_errors() -> None:
    async with client() as http:
        response = await http.get("/boom", headers={"authorization": "Bearer abc"})
    assert response.status_code == 500
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_anonymous_requests_keep_the_apps_cache_control() -> None:
    async with client() as http:
        response = await http.get("/data")
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_app_headers_survive() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = ((b"x-app", b"1"), (b"content-length", b"0"))  # any iterable is allowed
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=SecurityHeadersMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/")
    assert response.headers["x-app"] == "1"
    assert response.headers["content-security-policy"] == API_CSP


@pytest.mark.parametrize("max_age", [-1, True, 1.5])
def test_rejects_a_bad_max_age(max_age: object) -> None:
    with pytest.raises(ValueError, match="hsts_max_age"):
        SecurityHeadersMiddleware(Starlette(), hsts=True, hsts_max_age=max_age)  # type: ignore[arg-type]
