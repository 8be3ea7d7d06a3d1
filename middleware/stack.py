"""The order the server's middleware wrap its app in."""

from __future__ import annotations

from starlette.types import ASGIApp

from middleware.access_log import AccessLogMiddleware
from middleware.body_limit import BodyLimitMiddleware
from middleware.compression import CompressionMiddleware
from middleware.cors import CorsMiddleware
from middleware.deadline import DeadlineMiddleware
from middleware.in_flight import InFlightLimitMiddleware
from middleware.metrics import HttpMetrics, MetricsMiddleware
from middleware.proxy_headers import ProxyHeadersMiddleware
from middleware.request_id import RequestIdMiddleware
from middleware.security_headers import SecurityHeadersMiddleware
from middleware.types import InfoLogger, OnError, RouteResolver


def build_stack(
    app: ASGIApp,
    *,
    logger: InfoLogger,
    access_log: bool,
    metrics: HttpMetrics,
    hsts: bool,
    max_body_bytes: int,
    on_error: OnError,
    trusted_proxies: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    cors_credentials: bool = False,
    max_in_flight: int = 0,
    compress_from: int = 0,
    request_timeout: float = 0,
    resolve_route: RouteResolver | None = None,
) -> ASGIApp:
    """Wrap `app`, outermost first: proxy headers (when proxies are trusted), request id,
    access log, metrics, compression (when on), security headers, CORS (when origins are
    allowed), the in-flight cap (when set), the request deadline (when set), body limit.
    Compression sits inside the access log and metrics, so what they record is what went on
    the wire; `resolve_route` names the route of a request refused before routing.

    The request id is outermost so every log line and every answer (a 500 from the app's error
    middleware, a 413 from the body limit) carries it; the body limit is innermost so the
    refused requests are still logged, counted and given security headers. CORS sits outside
    the in-flight cap and the body limit so their 503 and 413 reach a browser page readable;
    the cap sheds load before any body is read. The deadline starts once a request is admitted,
    before its body is read: a slow upload spends its own time.
    """
    app = BodyLimitMiddleware(app, max_bytes=max_body_bytes, on_error=on_error)
    if request_timeout:
        app = DeadlineMiddleware(app, seconds=request_timeout)
    if max_in_flight:
        app = InFlightLimitMiddleware(app, limit=max_in_flight, on_error=on_error)
    if cors_origins:
        # Left out rather than empty: an empty allowlist would still cost a call per request.
        app = CorsMiddleware(app, allow_origins=cors_origins, allow_credentials=cors_credentials)
    app = SecurityHeadersMiddleware(app, hsts=hsts)
    if compress_from:
        app = CompressionMiddleware(app, minimum_size=compress_from)
    app = MetricsMiddleware(app, metrics=metrics, resolve_route=resolve_route)
    if access_log:
        # Left out rather than disabled: a disabled layer would still cost a call per request.
        app = AccessLogMiddleware(app, logger=logger, resolve_route=resolve_route)
    app = RequestIdMiddleware(app)
    if trusted_proxies:
        # Outermost, so the log line, the metrics endpoint and limits all see the real client.
        app = ProxyHeadersMiddleware(app, trusted=trusted_proxies)
    return app
