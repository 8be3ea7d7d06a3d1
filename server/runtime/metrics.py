"""The /metrics endpoint and the registry behind it.

With several granian workers each process writes its samples to files under
``PROMETHEUS_MULTIPROC_DIR`` (set by ``python -m server serve``) and any worker answering a
scrape aggregates all of them, so one scrape sees the whole server.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from server.web.apidoc import api
from server.web.errors import Forbidden, Unauthorized

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition_registry(app_registry: CollectorRegistry) -> CollectorRegistry:
    if not multiprocess_mode():
        return app_registry
    registry = CollectorRegistry(auto_describe=True)
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def retire_worker(flushers: Sequence[Callable[[], None]]) -> None:
    """Last flush, then drop this worker's live gauges from the aggregate as it stops."""
    if multiprocess_mode():
        for flush in flushers:
            flush()
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_scrape_allowed(request: Request, token: str | None) -> None:
    """Metrics are not public: a bearer token, or a direct (unproxied) loopback client."""
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized(
                "A valid metrics token is required.", headers={"www-authenticate": "Bearer"}
            )
        return
    client = request.client.host if request.client else None
    if "x-forwarded-for" in request.headers or not _loopback(client):
        raise Forbidden("Metrics are served to loopback clients only; set HOTPATH_METRICS_TOKEN.")


@api(
    summary="Prometheus metrics",
    description="Needs `Authorization: Bearer <HOTPATH_METRICS_TOKEN>`; without a configured "
    "token only direct loopback clients are served.",
    tags=("operations",),
    responses={200: str},
    errors=(401, 403),
    response_media_type=CONTENT_TYPE_LATEST,
)
async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state
    check_scrape_allowed(request, state.settings.metrics_token)
    for flush in state.metric_flushers:
        flush()
    body = generate_latest(state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})
