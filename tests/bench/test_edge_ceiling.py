"""The edge ceiling (bench/ceilings/fixed_json_edge.py) does the jobs hotpath's stack does for
``GET /livez``: the same answer, headers included, and the same access-log line. If it drifted
(a header hotpath gained, a field of the line), make bench's split of ping's ratio into the
jobs' share and the structure's would be wrong."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from bench.ceilings import fixed_json_edge
from middleware.metrics import HttpMetrics
from server.app import create_app
from server.runtime.logs import request_line_logger
from server.runtime.settings import Settings
from tests.fixtures.support import client_for, lifespan

# Differ by nature between two requests.
_MOMENTARY = ("@timestamp", "event.duration")


def _access_lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [
        {k: v for k, v in line.items() if k not in _MOMENTARY}
        for line in lines
        if line.get("message") == "http_request"
    ]


async def test_the_edge_ceiling_answers_and_logs_what_hotpaths_livez_does(
    settings: Settings,
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Production's headers: HSTS is on there (make bench serves HOTPATH_ENV=production).
    app = create_app(dataclasses.replace(settings, hsts=True), logger=logger)
    monkeypatch.setattr(fixed_json_edge, "_lines", request_line_logger())
    metrics = HttpMetrics(registry=None)
    monkeypatch.setattr(fixed_json_edge, "_metrics", metrics)
    headers = {"x-request-id": "edge-1", "user-agent": "edge-test/1"}
    answers = []
    async with lifespan(app):
        for target in (app, fixed_json_edge.app):
            async with client_for(target) as client:
                # wrk's ping sends no Accept-Encoding (compression would add Vary).
                del client.headers["accept-encoding"]
                answers.append(await client.get("/livez", headers=headers))
    ours, edge = answers
    assert ours.status_code == edge.status_code == 200
    assert edge.content == ours.content
    assert sorted(edge.headers.multi_items()) == sorted(ours.headers.multi_items())
    assert edge.headers["x-request-id"] == "edge-1"
    ours_line, edge_line = _access_lines(log_stream)
    assert edge_line == ours_line
    assert list(edge_line) == list(ours_line)  # the same fields in the same order
    assert edge_line["http.request.id"] == "edge-1"
    assert [key[:2] for key in metrics.series] == [("GET", "/livez")]
    assert metrics.active == {"GET": 0}


async def test_the_edge_ceiling_makes_an_id_when_the_callers_is_not_sane(
    logger: FilteringBoundLogger, log_stream: io.BytesIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fixed_json_edge, "_lines", request_line_logger())
    async with client_for(fixed_json_edge.app) as client:
        answer = await client.get("/livez", headers={"x-request-id": "not sane!"})
    made = answer.headers["x-request-id"]
    assert made != "not sane!"
    assert len(made) == 32
    [line] = _access_lines(log_stream)
    assert line["http.request.id"] == made
