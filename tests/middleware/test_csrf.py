"""CsrfMiddleware on its own: which requests it checks and what passes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from middleware.csrf import CsrfMiddleware, CsrfRejected

SESSION, CSRF = "__Host-s", "__Host-c"


def on_error(exc: Exception) -> ASGIApp:
    assert isinstance(exc, CsrfRejected)
    return JSONResponse({"refused": str(exc)}, status_code=403)


def guarded(principal: Any = None) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("passed")(scope, receive, send)

    middleware = CsrfMiddleware(
        app, session_cookie=SESSION, csrf_cookie=CSRF, csrf_header="X-CSRF-Token", on_error=on_error
    )

    async def with_principal(scope: Scope, receive: Receive, send: Send) -> None:
        scope["principal"] = principal  # what the authentication layer in front of it sets
        await middleware(scope, receive, send)

    return with_principal


async def status(app: ASGIApp, method: str, headers: list[tuple[str, str]]) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return (await http.request(method, "/x", headers=headers)).status_code


GOOD = [("cookie", f"{SESSION}=r; {CSRF}=tok"), ("sec-fetch-site", "same-origin")]


async def test_only_unsafe_cookie_authenticated_requests_are_checked() -> None:
    app = guarded()
    for method in ("GET", "HEAD", "OPTIONS"):
        assert await status(app, method, GOOD) == 200, method
    assert await status(app, "POST", GOOD) == 403  # no token
    assert await status(app, "POST", []) == 200  # no cookie at all
    assert await status(app, "POST", [("cookie", f"{CSRF}=tok; other=1")]) == 200
    assert await status(app, "POST", [("cookie", f"{SESSION}=")]) == 200  # an emptied cookie
    assert await status(guarded(principal=object()), "DELETE", GOOD) == 200  # bearer or key


async def test_the_token_must_match_and_the_site_must_be_ours() -> None:
    app = guarded()
    assert await status(app, "POST", [*GOOD, ("x-csrf-token", "tok")]) == 200
    assert await status(app, "PATCH", [*GOOD, ("x-csrf-token", "tok2")]) == 403
    cross = [("cookie", f"{SESSION}=r; {CSRF}=tok"), ("sec-fetch-site", "cross-site")]
    assert await status(app, "POST", [*cross, ("x-csrf-token", "tok")]) == 403
    # Cookies split over two Cookie headers (HTTP/2 allows it) are read together.
    split = [
        ("cookie", f"{SESSION}=r"),
        ("cookie", f"{CSRF}=tok"),
        ("sec-fetch-site", "same-site"),
        ("x-csrf-token", "tok"),
    ]
    assert await status(app, "PUT", split) == 200


def test_it_is_configured_fully() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    with pytest.raises(ValueError, match="non-empty"):
        CsrfMiddleware(app, session_cookie="", csrf_cookie=CSRF, csrf_header="h", on_error=on_error)
    with pytest.raises(TypeError):
        CsrfMiddleware(app, session_cookie=SESSION, csrf_cookie=CSRF, csrf_header="h", on_error=1)  # type: ignore[arg-type]
