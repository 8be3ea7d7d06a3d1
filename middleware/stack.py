"""The order the server's middleware wrap its app in."""

from __future__ import annotations

from opentelemetry.trace import Tracer
from starlette.types import ASGIApp

from middleware.access_log import AccessLog
from middleware.body_limit import BodyLimitMiddleware, BodyTiming
from middleware.boundary import BoundaryMiddleware
from middleware.compression import CompressionMiddleware
from middleware.cors import CorsMiddleware
from middleware.deadline import DeadlineMiddleware
from middleware.edge import EdgeMiddleware
from middleware.in_flight import InFlightLimitMiddleware
from middleware.metrics import HttpMetrics
from middleware.proxy_headers import ProxyHeadersMiddleware
from middleware.request_id import RequestIds
from middleware.security_headers import SecurityHeaders
from middleware.tracing import Tracing
from middleware.types import InfoLogger, OnError, Rescue, RouteResolver, bound


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
    body_timing: BodyTiming = BodyTiming(),  # noqa: B008 (frozen: one shared default is safe)
    tracer: Tracer | None = None,
    rescue: Rescue | None = None,
) -> ASGIApp:
    """Wrap `app`, outermost first: proxy headers (when proxies are trusted); the edge, one
    layer running the request id, the access log (when on), tracing (when a tracer is given),
    the metrics and the security headers (middleware/edge.py); compression (when on); CORS
    (when origins are allowed); the body limit, the in-flight cap (when set), the request
    deadline (when set: started by the in-flight cap's layer as it admits a request, or a
    layer of its own when there is no cap), the error boundary (when `rescue` is given: run
    by the in-flight cap's layer in the coroutine that holds the slot, or a layer of its own,
    innermost, when there is no cap; middleware/boundary.py).
    Compression sits inside the edge, so what the access log and the metrics record is what
    went on the wire, and the security headers are added to what it answers (it changes only
    the body, Content-Length, Content-Encoding, ETag and Vary); `resolve_route` names the route
    of a request refused before routing.

    The edge is outermost so every log line and every answer (a 500 from the app's error
    middleware, a 413 from the body limit) carries the request id; the refusing layers sit
    inside it so what they refuse is still logged, counted and given headers. CORS sits
    outside the body limit and the in-flight cap so their 413, 408 and 503 reach a browser
    page readable. The body is read whole (within its size and time limits) outside the
    in-flight cap: a client that announces a body and sends it slowly, or never, waits on the
    body limit's own budget and never holds a slot that admitted requests need. The deadline
    starts once a request is admitted, its body in hand.
    """
    if not isinstance(metrics, HttpMetrics):
        raise TypeError("metrics must be an HttpMetrics")
    # Each layer holds the one inside it as a bound method (`bound`): a call the interpreter
    # specializes, where an object's call goes through its type's call slot.
    if max_in_flight:
        # The deadline is started and the error boundary run by the cap's layer as it
        # admits: a call and a coroutine frame fewer a request.
        app = InFlightLimitMiddleware(
            bound(app),
            limit=max_in_flight,
            on_error=on_error,
            on_shed=metrics.count_shed,
            deadline=request_timeout,
            rescue=rescue,
        )
    else:
        if rescue is not None:
            app = BoundaryMiddleware(bound(app), rescue=rescue)
        if request_timeout:
            app = DeadlineMiddleware(bound(app), seconds=request_timeout)
    app = BodyLimitMiddleware(
        bound(app), max_bytes=max_body_bytes, on_error=on_error, timing=body_timing
    )
    if cors_origins:
        # Left out rather than empty: an empty allowlist would still cost a call per request.
        app = CorsMiddleware(
            bound(app),
            allow_origins=cors_origins,
            on_error=on_error,
            allow_credentials=cors_credentials,
        )
    if compress_from:
        app = CompressionMiddleware(bound(app), minimum_size=compress_from)
    # A job turned off is given as None: no call on a request. Tracing off means no
    # OpenTelemetry call at all.
    app = EdgeMiddleware(
        bound(app),
        request_ids=RequestIds(),
        access_log=AccessLog(logger) if access_log else None,
        tracing=Tracing(tracer) if tracer is not None else None,
        metrics=metrics,
        security=SecurityHeaders(hsts=hsts),
        resolve_route=resolve_route,
    )
    if trusted_proxies:
        # Outermost, so the log line, the metrics endpoint and limits all see the real client.
        app = ProxyHeadersMiddleware(bound(app), trusted=trusted_proxies)
    return app
