"""The order the server's middleware wrap its app in."""

from __future__ import annotations

from starlette.types import ASGIApp

from middleware.access_log import AccessLogMiddleware
from middleware.body_limit import BodyLimitMiddleware
from middleware.metrics import HttpMetrics, MetricsMiddleware
from middleware.proxy_headers import ProxyHeadersMiddleware
from middleware.request_id import RequestIdMiddleware
from middleware.security_headers import SecurityHeadersMiddleware
from middleware.types import InfoLogger, OnError


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
) -> ASGIApp:
    """Wrap `app`, outermost first: proxy headers (when proxies are trusted), request id,
    access log, metrics, security headers, body limit.

    The request id is outermost so every log line and every answer (a 500 from the app's error
    middleware, a 413 from the body limit) carries it; the body limit is innermost so the
    refused requests are still logged, counted and given security headers.
    """
    app = BodyLimitMiddleware(app, max_bytes=max_body_bytes, on_error=on_error)
    app = SecurityHeadersMiddleware(app, hsts=hsts)
    app = MetricsMiddleware(app, metrics=metrics)
    if access_log:
        # Left out rather than disabled: a disabled layer would still cost a call per request.
        app = AccessLogMiddleware(app, logger=logger)
    app = RequestIdMiddleware(app)
    if trusted_proxies:
        # Outermost, so the log line, the metrics endpoint and limits all see the real client.
        app = ProxyHeadersMiddleware(app, trusted=trusted_proxies)
    return app
