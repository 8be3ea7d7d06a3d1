"""Refuse cross-site state changes that a session cookie would authenticate.

A request is cookie-authenticated when it carries the session cookie and no credentials of its
own (the authentication layer found no principal: no bearer token, no API key). For such a
request with an unsafe method, two checks must both pass:

- ``Sec-Fetch-Site`` is ``same-origin`` or ``same-site``: the browser says the page sending it
  is ours. A missing header fails too; every current browser sends it, and cookie mode is for
  browsers only.
- double submit: the CSRF header equals the CSRF cookie. Both cookies are ``__Host-`` cookies,
  which a sibling subdomain can neither read nor overwrite, so a page that is same-site but not
  ours cannot know the value.

Bearer-token and API-key requests never reach the checks: a browser does not attach those by
itself, so they cannot be forged cross-site. Safe methods are not checked either; they change
nothing. A request that passed the checks is marked ``scope["csrf_checked"] = True``: an
endpoint that reads the session cookie itself (the refresh) must use it only then, or a request
carrying someone's bearer token beside the victim's cookie would skip the checks.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from middleware.types import OnError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE = frozenset({b"same-origin", b"same-site"})


class CsrfRejected(Exception):
    """A cookie-authenticated state change failed the CSRF checks (the server answers 403)."""


class CsrfMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        session_cookie: str,
        csrf_cookie: str,
        csrf_header: str,
        on_error: OnError,
    ) -> None:
        if not session_cookie or not csrf_cookie or not csrf_header:
            raise ValueError("session_cookie, csrf_cookie and csrf_header must be non-empty")
        if not callable(on_error):
            raise TypeError("on_error must be callable")
        self.app = app
        self.session_cookie = session_cookie
        self.csrf_cookie = csrf_cookie
        self._marker = session_cookie.encode("latin-1") + b"="
        self._header = csrf_header.lower().encode("latin-1")
        self.on_error = on_error

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or scope.get("principal") is not None
        ):
            return self.app(scope, receive, send)
        cookie = fetch_site = token = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"sec-fetch-site":
                fetch_site = value
            elif name == self._header:
                token = value
        if cookie is None or self._marker not in cookie:
            return self.app(scope, receive, send)  # not cookie-authenticated
        cookies = cookie_parser(cookie.decode("latin-1"))
        if not cookies.get(self.session_cookie):
            return self.app(scope, receive, send)
        if fetch_site not in _SAME_SITE:
            return self.on_error(CsrfRejected("The request does not come from this site."))(
                scope, receive, send
            )
        expected = cookies.get(self.csrf_cookie, "").encode("latin-1")
        if not token or not expected or not hmac.compare_digest(token, expected):
            return self.on_error(CsrfRejected("The CSRF token is missing or does not match."))(
                scope, receive, send
            )
        scope["csrf_checked"] = True
        return self.app(scope, receive, send)
