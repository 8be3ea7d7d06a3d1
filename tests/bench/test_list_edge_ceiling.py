"""The list's edge ceiling (bench/ceilings/list_edge.py) does the jobs hotpath does for an
anonymous ``GET /v1/products?limit=N``, first page and behind a cursor: the same answer,
headers included, and the same access-log line. If it drifted, make bench's split of the lists'
ratios into jobs and structure would be wrong."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from bench.ceilings import edge_jobs, list_edge, list_page
from server.runtime.settings import Settings
from server.web.pagination import CursorCodec
from tests.fixtures.catalog import Catalog
from tests.fixtures.support import client_for, lifespan

_MOMENTARY = ("@timestamp", "event.duration")


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
    # Cursors signed with the app's key, as make bench gives both the same HOTPATH_SECRET_KEY.
    monkeypatch.setattr(list_page, "_cursors", CursorCodec(settings.secret_key))
    monkeypatch.setenv("CEILING_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CEILING_POOL", "hotpath")
    async with lifespan(list_edge.app), client_for(list_edge.app) as client:
        yield client


def _access_lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [
        {k: v for k, v in line.items() if k not in _MOMENTARY}
        for line in lines
        if line.get("message") == "http_request"
        and line["url.path"] == "/v1/products"
        and line["http.request.method"] == "GET"
    ]


def _headers(answer: httpx.Response) -> list[tuple[str, str]]:
    # RateLimit's r= is what the bucket has left: each process leases its own tokens.
    return [
        (k, v.partition(";r=")[0] if k == "ratelimit" else v)
        for k, v in answer.headers.multi_items()
    ]


async def test_the_list_ceiling_answers_and_logs_what_hotpath_does(
    http: httpx.AsyncClient, catalog: Catalog, edge: httpx.AsyncClient, log_stream: io.BytesIO
) -> None:
    for _ in range(5):
        await catalog.create()
    for client in (http, edge):
        del client.headers["accept-encoding"]  # wrk's paths.lua sends none
    headers = {"x-request-id": "edge-list-1", "user-agent": "edge-test/1"}
    path = "/v1/products?limit=2"
    for _ in range(2):  # the first page, then one behind hotpath's own cursor
        ours = await http.get(path, headers=headers)
        theirs = await edge.get(path, headers=headers)
        assert ours.status_code == theirs.status_code == 200
        assert theirs.content == ours.content, path
        assert _headers(theirs) == _headers(ours)
        assert theirs.headers["ratelimit-policy"] == '"read";q=100000;w=1'
        cursor = ours.json()["next_cursor"]
        assert cursor is not None
        path = f"/v1/products?limit=2&cursor={cursor}"
    lines = _access_lines(log_stream)
    assert len(lines) == 4
    assert lines[1] == lines[0]
    assert lines[3] == lines[2]
    assert list(lines[1]) == list(lines[0])  # the same fields in the same order
    assert lines[1]["http.route"] == "/v1/products"
