"""The read's edge ceiling (bench/ceilings/product_edge.py) does the jobs hotpath does for an
authenticated ``GET /v1/products/{id}``, warm and uncached: the same answer, headers included,
and the same access-log line. If it drifted (a header hotpath gained, a field of the line, a
job left out), make bench's split of the reads' ratios into jobs and structure would be wrong."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from bench.ceilings import edge_jobs, product_edge
from server.app import HotpathApp
from server.runtime.settings import Settings
from tests.fixtures.catalog import Catalog
from tests.fixtures.identity import Accounts
from tests.fixtures.support import client_for, lifespan

_MOMENTARY = ("@timestamp", "event.duration")


@pytest.fixture(params=[30.0, 0.0], ids=["warm", "uncached"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # make bench's production configuration: HSTS and the limiter on, limits never reached;
    # the uncached read is the same server with the product cache off.
    return dataclasses.replace(
        settings,
        hsts=True,
        rate_limits=True,
        rate_read=(100_000, 1.0),
        rate_write=(100_000, 1.0),
        rate_auth=(100_000, 1.0),
        product_cache_seconds=request.param,
    )


@pytest.fixture
async def edge(
    settings: Settings, logger: FilteringBoundLogger, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(edge_jobs, "settings_from_env", lambda: settings)
    monkeypatch.setattr(edge_jobs, "logger_for", lambda level: logger)
    monkeypatch.setenv("CEILING_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CEILING_POOL", "hotpath")
    async with lifespan(product_edge.app), client_for(product_edge.app) as client:
        yield client


def _access_lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [
        {k: v for k, v in line.items() if k not in _MOMENTARY}
        for line in lines
        if line.get("message") == "http_request" and "/v1/products/" in line["url.path"]
    ]


def _without_remaining(headers: httpx.Headers) -> list[tuple[str, str]]:
    # RateLimit's r= is what the bucket has left: each process leases its own tokens.
    return sorted(
        (k, v.partition(";r=")[0] if k == "ratelimit" else v) for k, v in headers.multi_items()
    )


async def test_the_read_ceiling_answers_and_logs_what_hotpath_does(
    app: HotpathApp,
    http: httpx.AsyncClient,
    accounts: Accounts,
    catalog: Catalog,
    edge: httpx.AsyncClient,
    settings: Settings,
    log_stream: io.BytesIO,
) -> None:
    product = await catalog.create(name="Edge lamp", stock=2)
    _, tokens = await accounts.create_and_login()
    headers = {**tokens.headers, "x-request-id": "edge-read-1", "user-agent": "edge-test/1"}
    path = f"/v1/products/{product['id']}"
    answers = []
    for client in (http, edge):
        del client.headers["accept-encoding"]  # wrk's product_get sends none
    for client in (http, edge, http, edge):  # the second pair served warm when the cache is on
        answers.append(await client.get(path, headers=headers))
    for ours, theirs in (answers[:2], answers[2:]):
        assert ours.status_code == theirs.status_code == 200
        assert theirs.content == ours.content
        assert _without_remaining(theirs.headers) == _without_remaining(ours.headers)
        assert [k for k, _ in theirs.headers.multi_items()] == [
            k for k, _ in ours.headers.multi_items()
        ]
    assert answers[1].headers["ratelimit-policy"] == '"read";q=100000;w=1'
    assert answers[1].headers["etag"] == product["etag"]
    lines = _access_lines(log_stream)
    assert len(lines) == 4
    assert lines[1] == lines[0]
    assert list(lines[1]) == list(lines[0])  # the same fields in the same order
    assert lines[1]["http.request.id"] == "edge-read-1"
    assert lines[1]["http.route"] == "/v1/products/{product_id}"
    jobs = product_edge._jobs
    assert jobs is not None
    cache = jobs.cache
    # Warm: the first read from Redis (hotpath stored the row there), the second from memory.
    if settings.product_cache_seconds:
        assert (cache.redis_hits + cache.misses, cache.local_hits) == (1, 1)
    else:
        assert (cache.misses, cache.local_hits) == (2, 0)
