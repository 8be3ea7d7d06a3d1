"""Helmet's default response headers, adapted for a JSON API."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Scope

from middleware.edge import EdgeMiddleware

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


class SecurityHeaders:
    """The security headers of every HTTP response.

    A Content-Security-Policy the response already carries (the docs page sets its own) is kept.
    A request that carried credentials (Authorization, X-API-Key or a cookie: ``credentialed``)
    is answered with `cache-control: no-store` in place of any cache-control the app set, so no
    shared cache keeps authenticated data. The edge (middleware/edge.py) calls ``credentialed``
    when the request begins and ``secure`` on the answer's start, outside compression, which
    changes neither these headers nor any the choice reads but Cache-Control's no-transform,
    which no route sets.
    """

    def __init__(self, *, hsts: bool = False, hsts_max_age: int = 31536000) -> None:
        if isinstance(hsts_max_age, bool) or not isinstance(hsts_max_age, int) or hsts_max_age < 0:
            raise ValueError(f"hsts_max_age must be a non-negative int, got {hsts_max_age!r}")
        headers: tuple[Header, ...] = _BASE_HEADERS
        if hsts:
            value = f"max-age={hsts_max_age}; includeSubDomains".encode("ascii")
            headers += ((b"strict-transport-security", value),)
        self._headers_with_csp = (*headers, _API_CSP)
        self._headers_without_csp = headers

    def credentialed(self, scope: Scope) -> bool:
        # A loop, not any(): a generator per request costs more than the loop.
        for name, _ in scope["headers"]:  # noqa: SIM110
            if name in _CREDENTIAL_HEADERS:
                return True
        return False

    def secure(self, raw: Iterable[tuple[bytes, bytes]], credentialed: bool) -> list[Header]:
        """A new list: the response's headers with the security headers."""
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


class SecurityHeadersMiddleware(EdgeMiddleware):
    """The security headers alone as a layer (the server's stack runs them in its one edge
    layer)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False, hsts_max_age: int = 31536000) -> None:
        super().__init__(app, security=SecurityHeaders(hsts=hsts, hsts_max_age=hsts_max_age))
