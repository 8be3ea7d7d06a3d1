"""The edge middleware as the app wires them from settings: CORS from the allowlist, the
in-flight cap in the stack, and the 503 the cap's refusal becomes."""

from __future__ import annotations

import dataclasses
from types import MethodType

from structlog.typing import FilteringBoundLogger

from middleware.boundary import BoundaryMiddleware
from middleware.cors import CorsMiddleware
from middleware.in_flight import InFlightLimitMiddleware, Overloaded
from server.app import create_app
from server.runtime.settings import Settings
from server.web.problem import to_app_error
from tests.fixtures.support import client_for, lifespan

ORIGIN = "https://app.example.com"


def layers(settings: Settings, logger: FilteringBoundLogger) -> list[type]:
    """The stack's layers down to the error boundary's (the in-flight cap's, or its own), each
    holding the next as its bound ``__call__`` (middleware.types.bound)."""
    found: list[type] = []
    app: object = create_app(settings, logger=logger).build_middleware_stack()
    while app is not None:
        found.append(type(app))
        if isinstance(app, InFlightLimitMiddleware | BoundaryMiddleware):
            break  # Starlette's part (authentication, the rate limit, the router) from here
        inner = getattr(app, "app", None)
        assert isinstance(inner, MethodType), f"{type(app).__name__} holds {inner!r}"
        app = inner.__self__
    return found


def test_cors_and_the_cap_are_in_the_stack_only_when_configured(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    off = dataclasses.replace(settings, cors_origins=(), max_in_flight=0)
    assert CorsMiddleware not in layers(off, logger)
    assert InFlightLimitMiddleware not in layers(off, logger)
    on = dataclasses.replace(settings, cors_origins=(ORIGIN,), max_in_flight=8)
    stack = layers(on, logger)
    assert stack.index(CorsMiddleware) < stack.index(InFlightLimitMiddleware)


async def test_an_allowed_origin_gets_cors_answers_and_a_foreign_one_does_not(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    app = create_app(dataclasses.replace(settings, cors_origins=(ORIGIN,)), logger=logger)
    async with lifespan(app), client_for(app) as http:
        preflight = await http.options(
            "/v1/products",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert int(preflight.headers["access-control-max-age"]) > 0
        allowed = await http.get("/v1/products", headers={"origin": ORIGIN})
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "Origin" in allowed.headers["vary"]
        foreign = await http.get("/v1/products", headers={"origin": "https://evil.example"})
        assert foreign.status_code == 200
        assert "access-control-allow-origin" not in foreign.headers
        assert "Origin" in foreign.headers["vary"]


async def test_a_refused_preflight_is_the_servers_problem_with_a_request_id(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    app = create_app(dataclasses.replace(settings, cors_origins=(ORIGIN,)), logger=logger)
    async with lifespan(app), client_for(app) as http:
        refused = await http.options(
            "/v1/products",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"] == "urn:hotpath:problem:cors-rejected"
    assert body["title"] == "CORS preflight rejected"
    assert body["detail"] == "The origin is not allowed to call this API."
    assert body["request_id"] == refused.headers["x-request-id"]
    assert "access-control-allow-origin" not in refused.headers
    assert "Access-Control-Request-Method" in refused.headers["vary"]


def test_the_caps_refusal_is_a_503_with_retry_after() -> None:
    error = to_app_error(Overloaded(3))
    assert error.status == 503
    assert error.slug == "overloaded"
    assert error.headers["retry-after"] == "3"


async def test_large_answers_are_compressed_and_their_etag_still_matches(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    from server.web.conditional import not_modified, required_versions

    app = create_app(settings, logger=logger)  # the default threshold, 1 KiB
    async with lifespan(app), client_for(app) as http:
        document = await http.get("/openapi.json", headers={"accept-encoding": "gzip"})
        assert document.status_code == 200
        assert document.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in document.headers["vary"]
        assert document.json()["openapi"].startswith("3.")  # httpx decoded it
        small = await http.get("/livez", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in small.headers
        plain = await http.get("/openapi.json", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
    # A tag read from a compressed answer names the same resource version.
    assert not_modified('"p7v3-gzip"', '"p7v3"')
    assert not_modified('W/"p7v3-br"', '"p7v3"')
    assert not not_modified('"p7v4-gzip"', '"p7v3"')
    assert required_versions('"p7v3-br"', "p", 7) == frozenset({3})
