"""The order's edge ceiling (bench/ceilings/order_edge.py) does the jobs hotpath does for
``POST /v1/orders`` around ceiling_order's transaction: the same answer and headers, the same
rows, the same access-log line, and the products' cache invalidation hotpath makes. If it
drifted, make bench's split of the order's ratio into jobs and structure would be wrong."""

from __future__ import annotations

import dataclasses
import io
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from bench.ceilings import edge_jobs, order_edge
from server.runtime.settings import Settings
from tests.bench.test_ceilings import _effects, _shape
from tests.fixtures.catalog import Catalog
from tests.fixtures.identity import Accounts
from tests.fixtures.support import client_for, lifespan

# Differ by nature between two orders.
_MOMENTARY = ("@timestamp", "event.duration")
_PER_ORDER = ("location", "content-length")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # make bench's production configuration: HSTS and the limiter on, limits never reached.
    return dataclasses.replace(
        settings,
        hsts=True,
        rate_limits=True,
        rate_read=(100_000, 1.0),
        rate_write=(100_000, 1.0),
        rate_auth=(100_000, 1.0),
    )


@pytest.fixture
async def edge(
    settings: Settings, logger: FilteringBoundLogger, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(edge_jobs, "settings_from_env", lambda: settings)
    monkeypatch.setattr(edge_jobs, "logger_for", lambda level: logger)
    monkeypatch.setenv("CEILING_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CEILING_POOL", "hotpath")
    async with lifespan(order_edge.app), client_for(order_edge.app) as client:
        yield client


def _headers(answer: httpx.Response) -> list[tuple[str, str]]:
    # RateLimit's r= is what the bucket has left: each process leases its own tokens.
    return [
        (k, v.partition(";r=")[0] if k == "ratelimit" else v)
        for k, v in answer.headers.multi_items()
        if k not in _PER_ORDER
    ]


async def test_the_order_ceiling_answers_writes_and_invalidates_what_hotpath_does(
    http: httpx.AsyncClient,
    catalog: Catalog,
    accounts: Accounts,
    db: asyncpg.Connection,
    edge: httpx.AsyncClient,
    log_stream: io.BytesIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = order_edge._jobs
    assert jobs is not None
    invalidated: list[list[tuple[int, int]]] = []
    original = jobs.cache.invalidate_many

    async def invalidate_many(written: Sequence[tuple[int, int]]) -> None:
        invalidated.append(list(written))
        await original(written)

    monkeypatch.setattr(jobs.cache, "invalidate_many", invalidate_many)
    first = await catalog.create(price=250, stock=10)
    second = await catalog.create(price=1000, stock=10)
    _, buyer = await accounts.create_and_login()
    body = {
        "items": [
            {"product_id": second["id"], "quantity": 2},
            {"product_id": first["id"], "quantity": 1},
        ]
    }
    answers = []
    for client in (http, edge):
        del client.headers["accept-encoding"]  # wrk's order_place sends none
        headers = {
            **buyer.headers,
            "idempotency-key": secrets.token_hex(16),
            "x-request-id": "edge-order-1",
            "user-agent": "edge-test/1",
        }
        answer = await client.post("/v1/orders", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        assert answer.headers["location"] == f"/v1/orders/{answer.json()['id']}"
        answers.append(answer)
    ours, theirs = answers
    assert _shape(theirs.json()) == _shape(ours.json())
    assert list(theirs.json()) == list(ours.json())
    assert _headers(theirs) == _headers(ours)
    assert theirs.headers["ratelimit-policy"] == '"write";q=100000;w=1'
    assert await _effects(db, theirs.json()["id"]) == await _effects(db, ours.json()["id"])
    versions = await db.fetch(
        "SELECT id, version FROM products WHERE id = ANY($1::bigint[]) ORDER BY id",
        [first["id"], second["id"]],
    )
    assert invalidated == [[(r["id"], r["version"]) for r in versions]]
    lines = _access_lines(log_stream)
    assert len(lines) == 2
    assert lines[1] == lines[0]
    assert list(lines[1]) == list(lines[0])  # the same fields in the same order
    assert lines[1]["http.route"] == "/v1/orders"


def _access_lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [
        {k: v for k, v in line.items() if k not in _MOMENTARY}
        for line in lines
        if line.get("message") == "http_request" and line["url.path"] == "/v1/orders"
    ]
