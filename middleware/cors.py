"""Cross-origin resource sharing for browser clients on an exact list of origins."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.types import CorsRejected, OnError

Header = tuple[bytes, bytes]

_ORIGIN = b"origin"
_REQUEST_METHOD = b"access-control-request-method"
_REQUEST_HEADERS = b"access-control-request-headers"
_VARY = b"vary"
_VARY_ORIGIN = b"origin"
_ANY = "*"
_SCHEMES = {"http": 80, "https": 443}
_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*").fullmatch
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch
# A browser sends these without asking, whatever Access-Control-Allow-Methods says (Fetch 3.2.3).
_SAFELISTED_METHODS = frozenset((b"GET", b"HEAD", b"POST"))

DEFAULT_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_HEADERS = (
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-api-key",
    "x-csrf-token",
    "x-request-id",
)
DEFAULT_EXPOSE = (
    "etag",
    "location",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-request-id",
)


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` as a browser serialises it in the Origin header.

    Lowercase, without the scheme's default port and without a trailing slash; anything that is
    not a plain http(s) origin (a path, a query, user info, ``null``) is refused, because it
    would never match a browser's Origin and the typo would go unnoticed.
    """
    if not isinstance(origin, str) or origin != origin.strip() or not origin:
        raise ValueError(f"origin must be scheme://host[:port], got {origin!r}")
    try:
        parts = urlsplit(origin.lower().removesuffix("/"))
        port = parts.port
    except ValueError:
        raise ValueError(f"origin must be scheme://host[:port], got {origin!r}") from None
    if (
        parts.scheme not in _SCHEMES
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or origin.endswith(("?", "#"))
    ):
        raise ValueError(f"origin must be scheme://host[:port], got {origin!r}")
    host = parts.hostname
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(f"origin has an invalid IPv6 host: {origin!r}") from None
    elif not _HOST(host):
        # Browsers send internationalised names as punycode (xn--...).
        raise ValueError(f"origin host must be an ASCII DNS name or an IP, got {origin!r}")
    if port == 0:
        raise ValueError(f"origin port must be 1-65535, got {origin!r}")
    if port is None or port == _SCHEMES[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _tokens(kind: str, values: Iterable[str], *, upper: bool = False) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{kind} must be an iterable of names, not one string")
    names: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _TOKEN(value) or value == _ANY:
            raise ValueError(f"{kind} must hold HTTP tokens (not '*'), got {value!r}")
        name = value.upper() if upper else value.lower()
        if name not in names:
            names.append(name)
    return tuple(names)


def _with_vary_origin(raw: Iterable[Header]) -> list[Header]:
    """A copy of the headers with ``origin`` in Vary, added once; the app's list may be shared."""
    headers = list(raw)
    first = None
    for index, (name, value) in enumerate(headers):
        if name == _VARY:
            listed = [token.strip() for token in value.lower().split(b",")]
            if _VARY_ORIGIN in listed or b"*" in listed:
                return headers
            if first is None:
                first = index
    if first is None:
        headers.append((_VARY, b"Origin"))
    else:
        headers[first] = (_VARY, headers[first][1] + b", Origin")
    return headers


class CorsMiddleware:
    """Answer CORS preflights and label the responses to allowed origins.

    A request from a foreign origin still runs: the browser enforces CORS, and only a missing
    ``Access-Control-Allow-Origin`` makes it withhold the answer from the page. Every response
    to a request with an Origin carries ``Vary: Origin`` so a shared cache never hands one
    origin's answer to another. With ``allow_origins=["*"]`` (never with credentials) the answer
    is ``*`` and does not vary. Preflights (OPTIONS with Access-Control-Request-Method) are
    answered here and never reach the app: 204 when the origin, method and every requested
    header are allowed, otherwise ``on_error(CorsRejected(detail))`` answers (the server's
    403 problem), without any Access-Control-Allow-* header.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Iterable[str],
        on_error: OnError,
        allow_credentials: bool = False,
        allow_methods: Iterable[str] = DEFAULT_METHODS,
        allow_headers: Iterable[str] = DEFAULT_HEADERS,
        expose_headers: Iterable[str] = DEFAULT_EXPOSE,
        max_age: int = 600,
    ) -> None:
        if isinstance(allow_origins, str):
            raise TypeError("allow_origins must be an iterable of origins, not one string")
        if not isinstance(allow_credentials, bool):
            raise TypeError(f"allow_credentials must be a bool, got {allow_credentials!r}")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(f"max_age must be a non-negative int, got {max_age!r}")
        if not callable(on_error):
            raise TypeError("on_error must be callable")
        origins = list(allow_origins)
        self.any_origin = _ANY in origins
        if self.any_origin:
            if allow_credentials:
                # The Fetch standard refuses '*' with credentials; echoing every origin instead
                # would hand any site the user's session.
                raise ValueError("allow_origins '*' cannot be combined with allow_credentials")
            if len(origins) > 1:
                raise ValueError("allow_origins '*' must stand alone")
            origins = []
        self.app = app
        self.on_error = on_error
        self.allow_origins = frozenset(normalise_origin(origin) for origin in origins)
        self.allow_credentials = allow_credentials
        self.enabled = self.any_origin or bool(self.allow_origins)
        methods = _tokens("allow_methods", allow_methods, upper=True)
        headers = _tokens("allow_headers", allow_headers)
        exposed = _tokens("expose_headers", expose_headers)
        self.max_age = max_age

        self._origins = frozenset(origin.encode("ascii") for origin in self.allow_origins)
        self._methods = _SAFELISTED_METHODS | {method.encode("ascii") for method in methods}
        self._headers = frozenset(header.encode("ascii") for header in headers)
        added: tuple[Header, ...] = ()
        if allow_credentials:
            added += ((b"access-control-allow-credentials", b"true"),)
        if exposed:
            added += ((b"access-control-expose-headers", ", ".join(exposed).encode("ascii")),)
        self._simple_added = added
        self._any_simple = ((b"access-control-allow-origin", b"*"), *added)
        preflight_vary = (
            _VARY,
            b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        )
        allowed: tuple[Header, ...] = ()
        if allow_credentials:
            allowed += ((b"access-control-allow-credentials", b"true"),)
        if methods:
            allowed += ((b"access-control-allow-methods", ", ".join(methods).encode("ascii")),)
        if headers:
            allowed += ((b"access-control-allow-headers", ", ".join(headers).encode("ascii")),)
        allowed += ((b"access-control-max-age", str(max_age).encode("ascii")), preflight_vary)
        self._preflight_allowed = allowed
        self._preflight_vary = preflight_vary
        self._refusals = {
            "origin": "The origin is not allowed to call this API.",
            "method": f"Allowed methods: {', '.join(methods)}.",
            "headers": f"Allowed request headers: {', '.join(headers)}.",
        }

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine unless a preflight is answered: see SecurityHeadersMiddleware.
        if not self.enabled or scope["type"] != "http":
            return self.app(scope, receive, send)
        origin: bytes | None = None
        for name, value in scope["headers"]:
            if name == _ORIGIN:
                origin = value
                break
        if origin is None:
            return self.app(scope, receive, send)
        if scope["method"] == "OPTIONS":
            requested_method: bytes | None = None
            requested_headers: list[bytes] = []
            for name, value in scope["headers"]:
                if name == _REQUEST_METHOD:
                    requested_method = value
                elif name == _REQUEST_HEADERS:
                    requested_headers.append(value)
            if requested_method is not None:
                return self._preflight(
                    origin, requested_method, requested_headers, scope, receive, send
                )

        if self.any_origin:
            added = self._any_simple
        elif origin in self._origins:
            added = ((b"access-control-allow-origin", origin), *self._simple_added)
        else:
            added = ()
        any_origin = self.any_origin

        def send_with_cors(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                raw = message.get("headers", ())
                headers = list(raw) if any_origin else _with_vary_origin(raw)
                headers.extend(added)
                message["headers"] = headers
            return send(message)

        return self.app(scope, receive, send_with_cors)

    def _refused_for(self, origin: bytes, method: bytes, requested: list[bytes]) -> str | None:
        if not (self.any_origin or origin in self._origins):
            return "origin"
        if method not in self._methods:
            return "method"
        for value in requested:
            for header in value.split(b","):
                header = header.strip().lower()
                if header and header not in self._headers:
                    return "headers"
        return None

    async def _preflight(
        self,
        origin: bytes,
        method: bytes,
        requested: list[bytes],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        reason = self._refused_for(origin, method, requested)
        if reason is not None:
            vary = self._preflight_vary

            def send_varied(message: Message) -> Awaitable[None]:
                # The refusal depends on the same request headers as an allowed answer.
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), vary]
                return send(message)

            await self.on_error(CorsRejected(self._refusals[reason]))(scope, receive, send_varied)
            return
        allow_origin = (b"access-control-allow-origin", b"*" if self.any_origin else origin)
        headers = [allow_origin, *self._preflight_allowed]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
