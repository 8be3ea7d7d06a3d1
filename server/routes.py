"""The whole URL map in one place."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute, Route

from server.docs import docs_routes
from server.health import handlers as health
from server.metrics import metrics_endpoint


def build_routes(openapi_document: Callable[[], bytes]) -> list[BaseRoute]:
    return [
        Route("/livez", health.livez, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *docs_routes(openapi_document),
    ]
