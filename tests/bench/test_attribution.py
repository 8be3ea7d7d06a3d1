"""make bench-attribution, so it cannot rot: a short run of two variants and the ceiling starts
every server, measures every round without an error and prints the table. It measures nothing;
the table's arithmetic is checked on rounds made up here."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.suite.attribution import SCRIPTS, VARIANTS, table
from tests.fixtures.bench_runs import run_module


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_attribution_bench_runs_its_variants_in_alternation(tmp_path: Path) -> None:
    out = tmp_path / "attribution.json"
    command = ["--scenario", "product_get", "--variants", "prod,nolimit"]
    command += ["--rounds", "2", "--seconds", "1", "--out", str(out)]
    done = run_module("bench.suite.attribution", *command, timeout=280)
    result = orjson.loads(out.read_bytes())
    assert len(result["rounds"]) == 2
    for round_ in result["rounds"]:
        assert set(round_) == {"ceiling_json", "prod", "nolimit"}
        assert all(cpu > 0 for cpu in round_.values())
    assert "| nolimit |" in done.stdout
    assert "load average before" in done.stdout


def test_the_table_gives_medians_ratios_and_differences_from_prod() -> None:
    rounds = [
        {"ceiling_json": 50.0, "prod": 150.0, "bare": 100.0},
        {"ceiling_json": 40.0, "prod": 160.0, "bare": 80.0},
        {"ceiling_json": 60.0, "prod": 120.0, "bare": 90.0},
    ]
    plan = {"scenario": "ping", "seconds": 4.0, "connections": 16}
    load = {"before": [1.0, 1.0, 1.0], "after": [2.0, 1.5, 1.0]}
    rps = [{"bare": 9000.0}, {"bare": 11000.0}, {"bare": 10000.0}]
    result: dict[str, object] = {"plan": plan, "rounds": rounds, "rps": rps, "load_average": load}
    lines = table(result).splitlines()
    assert "load average before 1.00/1.00/1.00, after 2.00/1.50/1.00" in lines[0]
    bare = next(line for line in lines if line.startswith("| bare |"))
    # median 90 µs; ratios 2.0, 2.0, 1.5 (median 2.0); bare - prod: -50, -80, -30 (median -50)
    assert bare == "| bare | 90.0; 80-100 | 2.00; 2.00, 2.00, 1.50 | -50.0 | 10,000 |"


def test_every_variant_but_prod_changes_a_setting() -> None:
    assert VARIANTS["prod"] == {}
    assert all(env for name, env in VARIANTS.items() if name != "prod")
    assert VARIANTS["bare"]["HOTPATH_ACCESS_LOG"] == "false"
    assert VARIANTS["bare"]["HOTPATH_RATE_LIMITS"] == "false"


def test_a_list_scenarios_ratios_are_to_the_list_ceiling() -> None:
    rounds = [
        {"ceiling_list_first": 400.0, "ceiling_list_edge": 480.0, "prod": 520.0},
        {"ceiling_list_first": 500.0, "ceiling_list_edge": 600.0, "prod": 700.0},
    ]
    plan = {"scenario": "product_list_deep", "seconds": 4.0, "connections": 16}
    load = {"before": [1.0, 1.0, 1.0], "after": [1.0, 1.0, 1.0]}
    result: dict[str, object] = {"plan": plan, "rounds": rounds, "load_average": load}
    lines = table(result).splitlines()
    assert "x ceiling_list_first (median; per round)" in lines[2]
    prod = next(line for line in lines if line.startswith("| prod |"))
    assert prod.startswith("| prod | 610.0; 520-700 | 1.35; 1.30, 1.40 | +0.0 |")
    assert set(SCRIPTS) >= {"product_list_first", "product_list_deep"}
