"""The assembled application against the real PostgreSQL and Redis."""

from __future__ import annotations

import functools
import gzip
import io
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import msgspec
import orjson
import pytest
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.container import build_container
from server.runtime.logs import flush_logs
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from server.web import errors
from server.web.responses import JSONResponse, read_json
from tests.fixtures.support import client_for, lifespan


class Widget(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int


async def echo_widget(request: Request) -> Response:
    widget = await read_json(request, Widget)
    return JSONResponse({"name": widget.name, "size": widget.size})


async def conflict(request: Request) -> Response:
    raise errors.Conflict("That widget is taken.")


async def crash(request: Request) -> Response:
    raise RuntimeError("secret internal detail 0xDEADBEEF")


@pytest.fixture
async def test_client(app: HotpathApp) -> AsyncIterator[httpx.AsyncClient]:
    app.router.routes.extend(
        [
            Route("/test/widgets", echo_widget, methods=["POST"]),
            Route("/test/conflict", conflict),
            Route("/test/crash", crash),
        ]
    )
    async with lifespan(app), client_for(app) as http:
        yield http


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == f"urn:hotpath:problem:{slug}"
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_livez_and_readyz(client: httpx.AsyncClient) -> None:
    live = await client.get("/livez")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "postgres": "ok",
        "migrations": "current",
        "revocations": "ok",
        "redis": "ok",
    }


async def test_readyz_is_503_while_draining(app: HotpathApp, client: httpx.AsyncClient) -> None:
    app.state.drain.draining = True
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["checks"]["process"] == "draining"


async def test_readyz_drain_file_is_seen(
    app: HotpathApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    app.state.drain.drain_file = tmp_path / "draining"
    assert (await client.get("/readyz")).status_code == 200
    (tmp_path / "draining").touch()
    assert (await client.get("/readyz")).status_code == 503


async def test_readyz_is_503_with_pending_migrations(
    settings: Settings, logger: FilteringBoundLogger, empty_db: str
) -> None:
    app = create_app(replace(settings, database_url=empty_db), logger=logger)
    async with lifespan(app), client_for(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "pending"
    assert response.json()["checks"]["revocations"] == "loading"


async def test_a_release_ahead_of_its_database_is_not_ready(
    settings: Settings, logger: FilteringBoundLogger, tmp_path: Path
) -> None:
    """New code whose migration has not run yet: through the container_factory seam, the
    app is built with a migrations folder holding one file more than the database has."""
    for source in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "9999_next_release.sql").write_text("SELECT 1;\n")
    factory = functools.partial(build_container, migrations_dir=tmp_path)
    app = create_app(settings, logger=logger, container_factory=factory)
    async with lifespan(app), client_for(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "pending"


async def test_readyz_when_redis_is_required_but_down(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    broken = replace(settings, redis_url="redis://127.0.0.1:1/0", redis_required=True)
    app = create_app(broken, logger=logger)
    async with lifespan(app), client_for(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"


async def test_router_404_and_405_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/route"), 404, "not-found")
    response = await client.delete("/livez")
    assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["allow"]


async def test_a_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    # routes.py declares one route per method: Allow names them all, not the first one's.
    response = await client.put("/v1/products/1")
    assert_problem(response, 405, "method-not-allowed")
    allow = {method.strip() for method in response.headers["allow"].split(",")}
    assert allow == {"GET", "HEAD", "PATCH", "DELETE"}


async def test_validation_is_422_with_a_pointer(test_client: httpx.AsyncClient) -> None:
    response = await test_client.post("/test/widgets", json={"name": "w", "size": "big"})
    body = assert_problem(response, 422, "validation-failed")
    assert body["errors"] == [
        {"pointer": "/size", "detail": "Expected `int`, got `str`"},
    ]
    ok = await test_client.post("/test/widgets", json={"name": "w", "size": 3})
    assert ok.json() == {"name": "w", "size": 3}


async def test_malformed_json_is_400(test_client: httpx.AsyncClient) -> None:
    response = await test_client.post(
        "/test/widgets", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed-json")


async def test_a_body_that_is_not_utf8_is_400(test_client: httpx.AsyncClient) -> None:
    response = await test_client.post(
        "/test/widgets",
        content=b'{"name": "\xff", "size": 1}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400, "malformed-json")


async def test_a_client_that_leaves_mid_body_is_a_499_not_a_server_error(
    app: HotpathApp, test_client: httpx.AsyncClient, log_stream: io.BytesIO
) -> None:
    inbox: list[Message] = [
        {"type": "http.request", "body": b'{"name": "w", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/test/widgets",
        "raw_path": b"/test/widgets",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"40")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 499
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    assert not [line for line in lines if line["log.level"] == "error"]
    (logged,) = [line for line in lines if line.get("url.path") == "/test/widgets"]
    assert logged["http.response.status_code"] == 499


async def test_wrong_media_type_is_415(test_client: httpx.AsyncClient) -> None:
    response = await test_client.post("/test/widgets", content=b"name=w")
    assert_problem(response, 415, "unsupported-media-type")
    body = gzip.compress(b'{"name": "w", "size": 3}')
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    gzipped = await test_client.post("/test/widgets", content=body, headers=headers)
    assert_problem(gzipped, 415, "unsupported-media-type")
    headers["content-encoding"] = "identity"
    plain = await test_client.post(
        "/test/widgets", content=b'{"name": "w", "size": 3}', headers=headers
    )
    assert plain.status_code == 200, plain.text


async def test_oversized_body_is_413(test_client: httpx.AsyncClient, settings: Settings) -> None:
    body = b'{"name": "' + b"x" * settings.max_body_bytes + b'", "size": 1}'
    response = await test_client.post(
        "/test/widgets", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload-too-large")

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    streamed = await test_client.post(
        "/test/widgets", content=stream(), headers={"content-type": "application/json"}
    )
    assert_problem(streamed, 413, "payload-too-large")


async def test_domain_error_is_rendered(test_client: httpx.AsyncClient) -> None:
    body = assert_problem(await test_client.get("/test/conflict"), 409, "conflict")
    assert body["detail"] == "That widget is taken."


async def test_unexpected_exception_is_a_bare_500_logged_with_request_id(
    app: HotpathApp, log_stream: io.BytesIO
) -> None:
    app.router.routes.append(Route("/test/crash", crash))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        headers = {"x-request-id": "trace-me-123", "traceparent": traceparent}
        response = await http.get("/test/crash", headers=headers)
    body = assert_problem(response, 500, "internal-error")
    assert "DEADBEEF" not in response.text
    assert body["request_id"] == "trace-me-123"
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    crash_lines = [line for line in lines if line["message"] == "unhandled_exception"]
    assert crash_lines
    assert crash_lines[0]["http.request.id"] == "trace-me-123"
    # Tracing off: the ids the traceparent brought.
    assert crash_lines[0]["trace.id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert crash_lines[0]["span.id"] == "00f067aa0ba902b7"
    assert "DEADBEEF" in crash_lines[0]["error.stack_trace"]


async def test_security_headers_and_no_store_on_authenticated_requests(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/livez", headers={"authorization": "Bearer abc"})
    assert (
        response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/livez", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    hostile_id = "bad id\u00e9 <script>".encode()
    hostile = await client.get("/livez", headers=[(b"x-request-id", hostile_id)])
    assert hostile.headers["x-request-id"] != hostile_id.decode()
    assert len(hostile.headers["x-request-id"]) == 32


async def test_metrics_use_route_templates_and_are_not_public(app: HotpathApp) -> None:
    async with lifespan(app):
        async with client_for(app) as local:
            await local.get("/livez")
            await local.get("/missing/123")
            text = (await local.get("/metrics")).text
            proxied = await local.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"})
        async with client_for(app, client=("203.0.113.9", 4000)) as remote:
            foreign = await remote.get("/metrics")
    assert 'http_route="/livez"' in text
    assert 'http_route="unmatched"' in text
    assert "/missing/123" not in text
    assert "http_server_active_requests" in text
    assert_problem(proxied, 403, "forbidden")
    assert_problem(foreign, 403, "forbidden")


async def test_requests_refused_before_routing_keep_their_route_label(
    app: HotpathApp, log_stream: io.BytesIO
) -> None:
    async with lifespan(app), client_for(app) as local:
        refused = await local.get("/v1/users/me", headers={"authorization": "Bearer stale"})
        too_big = await local.post(
            "/v1/auth/login", content=b"{}", headers={"content-length": str(1 << 30)}
        )
        assert (refused.status_code, too_big.status_code) == (401, 413)
        await local.get("/v1/no-such-thing/7")
        text = (await local.get("/metrics")).text
    counted = {
        (labels["http_route"], labels["http_response_status_code"])
        for labels in (
            dict(re.findall(r'(\w+)="([^"]*)"', line))
            for line in text.splitlines()
            if line.startswith("http_server_request_duration_seconds_count{")
        )
    }
    assert {("/v1/users/me", "401"), ("/v1/auth/login", "413"), ("unmatched", "404")} <= counted
    flush_logs()
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    routes = {
        (line["http.route"], line["http.response.status_code"])
        for line in lines
        if line["message"] == "http_request"
    }
    assert {("/v1/users/me", 401), ("/v1/auth/login", 413), ("unmatched", 404)} <= routes


async def test_metrics_token_is_required_when_configured(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    token = "scrape-token-0123456789"
    app = create_app(replace(settings, metrics_token=token), logger=logger)
    async with lifespan(app), client_for(app) as http:
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await http.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert_problem(missing, 401, "unauthorized")
    assert_problem(wrong, 401, "unauthorized")
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain")


async def test_openapi_documents_every_route(app: HotpathApp, client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    validate(document)
    for route in app.routes:
        if isinstance(route, Route) and route.include_in_schema:
            assert route.path in document["paths"], route.path
            for method in route.methods or ():
                if method != "HEAD":
                    assert method.lower() in document["paths"][route.path]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


async def test_trusted_proxy_headers_reach_the_access_log(
    settings: Settings, logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    app = create_app(replace(settings, trusted_proxies=("127.0.0.1/32",)), logger=logger)
    async with lifespan(app), client_for(app) as http:
        await http.get("/livez", headers={"x-forwarded-for": "203.0.113.5"})
        metrics = await http.get("/metrics", headers={"x-forwarded-for": "203.0.113.5"})
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    access = [line for line in lines if line["message"] == "http_request"]
    assert access[0]["client.ip"] == "203.0.113.5"
    assert_problem(metrics, 403, "forbidden")
