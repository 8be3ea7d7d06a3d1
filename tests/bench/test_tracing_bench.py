"""make bench-tracing in smoke mode, so it cannot rot: its four servers start, every round
runs without an error, and the traced servers' spans reach the sink (at least the server span
per request on the warm read, and the SQL span too on the uncached one). It measures nothing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.fixtures.bench_runs import run_module

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_the_tracing_bench_runs_and_its_spans_arrive(tmp_path: Path) -> None:
    out = tmp_path / "tracing.json"
    command = ["--smoke", "--rounds", "1", "--seconds", "1", "--out", str(out)]
    done = run_module("bench.suite.tracing", *command, timeout=280)
    assert "| product_get (warm read) |" in done.stdout
    result = orjson.loads(out.read_bytes())
    (round_,) = result["rounds"]
    assert set(round_) == {"off", "on", "off_nocache", "on_nocache"}
    assert all(cpu > 0 for cpu in round_.values())
    spans = result["spans_per_request"]
    # Each traced server has a sink of its own, counted until it has stopped (its queue sent);
    # background work (revocation polls, heartbeats) adds a few spans, never fewer.
    assert spans["on"] >= 0.8
    assert spans["on_nocache"] >= 1.6
