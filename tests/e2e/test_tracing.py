"""Tracing and log correlation on a served process (python -m server serve, granian):

- with HOTPATH_OTEL_ENDPOINT pointing at a real OTLP/HTTP receiver on loopback, a request
  that brings a W3C traceparent gives a server span in the caller's trace, the child of the
  caller's span, with the request's SQL (named by the query's name, no arguments) and Redis
  calls as its children; its access log line names that trace and the server span;
- with tracing off, the access log line still carries the ids the traceparent brought;
- every line the process writes is the same JSON (ECS names), and a file of the docs bundle
  is logged with the bytes actually sent.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.web.docs import ASSETS_DIR
from tests.fixtures.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, ReceivedSpan, otlp_receiver
from tests.fixtures.servers import Redis, create_product, login, running_servers
from tests.fixtures.users import insert_user

pytestmark = pytest.mark.slow

TRACE_ID = secrets.token_hex(16)
CALLER_SPAN = secrets.token_hex(8)
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def log_lines(data_dir: Path) -> list[dict[str, Any]]:
    text = (data_dir / "servers.log").read_bytes()
    # Every line: hotpath's, granian's, asyncpg's. A plain-text line fails here.
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def access_line(data_dir: Path, response: httpx.Response) -> dict[str, Any]:
    """The access log line of the request ``response`` answered (found by its request id);
    info lines reach stdout within 0.5 s."""
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        lines = [
            line
            for line in log_lines(data_dir)
            if line["message"] == "http_request" and line["http.request.id"] == request_id
        ]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, lines
            return lines[0]
        time.sleep(0.1)


def wait_for_line(data_dir: Path, message: str) -> None:
    deadline = time.monotonic() + 20
    while not any(line["message"] == message for line in log_lines(data_dir)):
        assert time.monotonic() < deadline, f"no {message} line"
        time.sleep(0.1)


def a_product(base: str, migrated_db: str) -> tuple[int, httpx.Response]:
    _, email, password = asyncio.run(insert_user(migrated_db, "staff"))
    headers = {"authorization": f"Bearer {login(base, email, password)}"}
    created = create_product(base, headers, name="Traced")
    product_id: int = created.json()["id"]
    return product_id, created


def descends_from(span: ReceivedSpan, ancestor: ReceivedSpan, spans: list[ReceivedSpan]) -> bool:
    by_id = {s.span_id: s for s in spans}
    current: ReceivedSpan | None = span
    while current is not None:
        if current.parent_span_id == ancestor.span_id:
            return True
        current = by_id.get(current.parent_span_id)
    return False


@pytest.fixture
def served(
    migrated_db: str, redis: Redis, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Path]]:
    env = {"HOTPATH_ACCESS_LOG": "true", **request.param}
    with running_servers(
        1, database_url=migrated_db, redis_url=redis.url, data_dir=tmp_path, extra_env=env
    ) as (base,):
        yield base, tmp_path


def test_a_traced_request_reaches_the_receiver_as_a_tree_in_the_callers_trace(
    migrated_db: str, redis: Redis, tmp_path: Path
) -> None:
    with otlp_receiver() as receiver:
        env = {
            "HOTPATH_ACCESS_LOG": "true",
            "HOTPATH_OTEL_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the batch goes within 0.1 s, not 5
        }
        with running_servers(
            1, database_url=migrated_db, redis_url=redis.url, data_dir=tmp_path, extra_env=env
        ) as (base,):
            # Redis connects in the background: the read below must find it there.
            wait_for_line(tmp_path, "redis_connected")
            product_id, created = a_product(base, migrated_db)
            path = f"/v1/products/{product_id}"
            response = httpx.get(base + path, headers={"traceparent": TRACEPARENT})
            assert response.status_code == 200

            def complete(spans: list[ReceivedSpan]) -> bool:
                ours = [s for s in spans if s.trace_id == TRACE_ID]
                return any(s.kind == SPAN_KIND_SERVER for s in ours) and any(
                    s.attributes.get("db.system.name") == "redis" for s in ours
                )

            spans = [s for s in receiver.wait_for(complete) if s.trace_id == TRACE_ID]

    (server,) = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert server.name == "GET /v1/products/{product_id}"
    assert server.parent_span_id == CALLER_SPAN
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/v1/products/{product_id}"
    assert server.service == "hotpath"

    sql = [s for s in spans if s.attributes.get("db.system.name") == "postgresql"]
    assert "get_product" in [s.name for s in sql]  # a cache miss: loaded from PostgreSQL
    for span in sql:
        assert span.kind == SPAN_KIND_CLIENT
        assert descends_from(span, server, spans)
        # The query's name, never its arguments or its text.
        assert set(span.attributes) <= {"db.system.name", "db.query.summary"}
        assert str(product_id) not in span.name
    redis_spans = [s for s in spans if s.attributes.get("db.system.name") == "redis"]
    assert redis_spans
    assert all(descends_from(s, server, spans) for s in redis_spans)

    line = access_line(tmp_path, response)
    assert (line["trace.id"], line["span.id"]) == (TRACE_ID, server.span_id)
    assert line["url.path"] == path
    # A request without traceparent starts a trace of its own, and its line names it.
    assert access_line(tmp_path, created)["trace.id"] not in (TRACE_ID, None)


@pytest.mark.parametrize("served", [{}], indirect=True)
def test_with_tracing_off_the_lines_carry_the_ids_the_header_brought(
    served: tuple[str, Path],
) -> None:
    base, data_dir = served
    response = httpx.get(f"{base}/livez", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    zero_trace = f"00-{'0' * 32}-{CALLER_SPAN}-01"
    untraced = httpx.get(f"{base}/openapi.json", headers={"traceparent": zero_trace})
    assert untraced.status_code == 200

    line = access_line(data_dir, response)
    assert (line["trace.id"], line["span.id"]) == (TRACE_ID, CALLER_SPAN)
    assert list(line)[:3] == ["@timestamp", "log.level", "message"]
    assert line["ecs.version"] == "8.11.0"
    invalid = access_line(data_dir, untraced)  # an all-zero trace id is no trace
    assert "trace.id" not in invalid


@pytest.mark.parametrize("served", [{}], indirect=True)
def test_a_file_of_the_docs_bundle_is_logged_with_the_bytes_sent(served: tuple[str, Path]) -> None:
    base, data_dir = served
    response = httpx.get(f"{base}/docs/assets/swagger-ui.css", headers={"accept-encoding": ""})
    assert response.status_code == 200
    size = (ASSETS_DIR / "swagger-ui.css").stat().st_size
    assert len(response.content) == size
    line = access_line(data_dir, response)
    assert line["http.response.body.bytes"] == size
