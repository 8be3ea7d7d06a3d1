"""Helmet's default response headers, adapted for a JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Header = tuple[bytes, bytes]

_CSP = b"content-security-policy"
_CACHE_CONTROL = b"cache-control"
_CREDENTIAL_HEADERS = frozenset((b"authorization", b"x-api-key", b"cookie"))
_NO_STORE = (_CACHE_CONTROL, b"no-store")

_BASE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"origin-agent-cluster", b"?1"),
    (b"x-dns-prefetch-control", b"off"),
    (b"x-download-options", b"noopen"),
    (b"x-permitted-cross-domain-policies", b"none"),
    (b"x-xss-protection", b"0"),
)
_API_CSP = (_CSP, b"default-src 'none'; frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response.

    A Content-Security-Policy the response already carries (the docs page sets its own) is kept.
    A request that carried credentials (Authorization, X-API-Key or a cookie) is answered with
    `cache-control: no-store` in place of any cache-control the app set, so no shared cache
    keeps authenticated data.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = False, hsts_max_age: int = 31536000) -> None:
        if isinstance(hsts_max_age, bool) or not isinstance(hsts_max_age, int) or hsts_max_age < 0:
            raise ValueError(f"hsts_max_age must be a non-negative int, got {hsts_max_age!r}")
        self.app = app
        headers: tuple[Header, ...] = _BASE_HEADERS
        if hsts:
            value = f"max-age={hsts_max_age}; includeSubDomains".encode("ascii")
            headers += ((b"strict-transport-security", value),)
        self._headers_with_csp = (*headers, _API_CSP)
        self._headers_without_csp = headers

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: the inner app's is handed back, so this layer adds no frame that
        # every await deeper down would have to pass through.
        if scope["type"] != "http":
            return self.app(scope, receive, send)

        credentialed = False
        for name, _ in scope["headers"]:
            if name in _CREDENTIAL_HEADERS:
                credentialed = True
                break

        def send_secured(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                message["headers"] = self._secure(message.get("headers", ()), credentialed)
            return send(message)

        return self.app(scope, receive, send_secured)

    def _secure(self, raw: Iterable[tuple[bytes, bytes]], credentialed: bool) -> list[Header]:
        # ASGI allows any iterable; it is read twice below.
        headers = raw if type(raw) is list else list(raw)
        has_csp = False
        has_cache_control = False
        for name, _ in headers:
            if name == _CSP:
                has_csp = True
            elif name == _CACHE_CONTROL:
                has_cache_control = True
        if credentialed and has_cache_control:
            headers = [header for header in headers if header[0] != _CACHE_CONTROL]
        added = self._headers_without_csp if has_csp else self._headers_with_csp
        if credentialed:
            return [*headers, *added, _NO_STORE]
        return [*headers, *added]
