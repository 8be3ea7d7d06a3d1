"""Pure ASGI middleware for hotpath; collaborators come in through constructors."""

from middleware.access_log import AccessLogMiddleware
from middleware.body_limit import BodyLimitMiddleware
from middleware.metrics import HttpMetrics, MetricsMiddleware
from middleware.proxy_headers import ProxyHeadersMiddleware
from middleware.request_id import RequestIdMiddleware
from middleware.security_headers import SecurityHeadersMiddleware
from middleware.stack import build_stack
from middleware.types import (
    BadContentLength,
    BodyReadersBusy,
    BodyTimeout,
    InfoLogger,
    OnError,
    PayloadTooLarge,
)

__all__ = [
    "AccessLogMiddleware",
    "BadContentLength",
    "BodyLimitMiddleware",
    "BodyReadersBusy",
    "BodyTimeout",
    "HttpMetrics",
    "InfoLogger",
    "MetricsMiddleware",
    "OnError",
    "PayloadTooLarge",
    "ProxyHeadersMiddleware",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
    "build_stack",
]
