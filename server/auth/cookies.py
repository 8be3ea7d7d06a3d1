"""Cookie mode for browser apps: the refresh token lives in an HttpOnly cookie.

A page's script never sees the refresh token, so an XSS bug cannot steal a long-lived
credential; the short-lived access token stays in memory and goes out as a bearer token. Both
cookies are ``__Host-`` cookies (Secure, Path=/, no Domain: the browser refuses them otherwise,
and no subdomain can set or read them) with SameSite=Strict. The CSRF cookie is readable by the
page, and its value is also in the response body for apps on another origin of the same site:
state changes that the session cookie authenticates must echo it in the CSRF header
(``middleware/csrf.py`` checks that). Browsers treat http://localhost as secure, so development
works over plain HTTP.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

REFRESH_COOKIE = "__Host-hotpath-refresh"
CSRF_COOKIE = "__Host-hotpath-csrf"
CSRF_HEADER = "X-CSRF-Token"
# The known-device token (server/auth/device_tokens.py): outlives sessions and logouts.
DEVICE_COOKIE = "__Host-hotpath-device"
DEVICE_MAX_AGE = 400 * 86400  # the longest a browser keeps a cookie


class SessionCookies:
    """Sets, reads and clears the two cookies; ``max_age`` is the session's absolute lifetime
    (the server ends the session itself; the cookie only need not outlive it)."""

    def __init__(self, *, max_age: int) -> None:
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age!r}")
        self.max_age = max_age

    @staticmethod
    def new_csrf_token() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def refresh_token(request: Request) -> str | None:
        return request.cookies.get(REFRESH_COOKIE) or None

    @staticmethod
    def present(request: Request) -> bool:
        return REFRESH_COOKIE in request.cookies

    def attach(self, response: Response, refresh_token: str, csrf_token: str) -> None:
        self._set(response, REFRESH_COOKIE, refresh_token, self.max_age, http_only=True)
        self._set(response, CSRF_COOKIE, csrf_token, self.max_age, http_only=False)

    def attach_device(self, response: Response, device_token: str) -> None:
        self._set(response, DEVICE_COOKIE, device_token, DEVICE_MAX_AGE, http_only=True)

    @staticmethod
    def device_token(request: Request) -> str | None:
        return request.cookies.get(DEVICE_COOKIE) or None

    def clear(self, response: Response) -> None:
        self._set(response, REFRESH_COOKIE, "", 0, http_only=True)
        self._set(response, CSRF_COOKIE, "", 0, http_only=False)

    @staticmethod
    def _set(response: Response, name: str, value: str, max_age: int, *, http_only: bool) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=True,
            httponly=http_only,
            samesite="strict",
        )
