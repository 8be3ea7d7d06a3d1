"""The benchmark suite in smoke mode, so it cannot rot: every server starts, every scenario
runs without an error, and the report is whole. It measures nothing: the budget is
`make bench`'s business, on a quiet machine."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import orjson
import pytest

from bench.suite.budget import BUDGETS, EDGES, NOLIMIT
from bench.suite.open_model import TARGETS as OPEN_MODEL_TARGETS
from bench.suite.peers import PEERS
from bench.suite.shares import jobs_verdict
from tests.fixtures.bench_runs import run_module


def splits_of(rounds: list[dict[str, float]]) -> dict[str, tuple[float, float, float]]:
    """Each edge split's (ratio, jobs, structure) from the budget rounds, recomputed here."""

    def median(top: str, bottom: str, kept: list[dict[str, float]]) -> float:
        return round(statistics.median(r[top] / r[bottom] for r in kept), 3)

    splits = {}
    for name, (ceiling, edge) in EDGES.items():
        kept = [r for r in rounds if {name, ceiling, edge} <= r.keys()]
        splits[name] = (
            median(name, ceiling, kept),
            median(edge, ceiling, kept),
            median(name, edge, kept),
        )
    return splits


pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SCENARIOS = {
    "ceiling_json",
    "ceiling_json_edge",
    "ceiling_pk",
    "ceiling_pk_asyncpg",
    "ceiling_pk_asyncpg_default",
    "ceiling_list_first",
    "ceiling_list_deep",
    "ceiling_order",
    "ping",
    "product_get",
    "product_get_apikey",
    "product_list_first",
    "product_list_deep",
    "order_place",
    "login",
    "mixed",
    "product_get_nocache",
    "product_get_nolimit",
    "peer_product_get",
    "peer_litestar_get",
    "peer_litestar_get_nocache",
    "peer_blacksheep_get",
    "peer_blacksheep_get_nocache",
}


def test_the_suite_runs_end_to_end_in_smoke_mode(tmp_path: Path) -> None:
    run_module("bench.suite", "--smoke", "--out", str(tmp_path), timeout=540)
    report = orjson.loads((tmp_path / "latest.json").read_bytes())
    scenarios = {s["name"]: s for s in report["scenarios"]}
    assert set(scenarios) == SCENARIOS
    for name, s in scenarios.items():
        assert s["requests"] > 0, name
        assert (s["http_errors"], s["socket_errors"]) == (0, 0), (name, s)
        assert s["cpu_us_per_request"] > 0, name
        if name.startswith("ceiling_") or name == "login":  # argon2: no floor but argon2
            assert s["ceiling"] is None
        else:
            assert s["cpu_ratio_to_ceiling"] > 0, name
    goals = [goal["goal"] for goal in report["budget"]]
    assert len(goals) == len(BUDGETS) + 3  # + the open-model p99, errors, RSS
    # The budgets of 2026-11-26 (issue 13 keeps them) are checked beside issue 19's.
    assert sum(goal.endswith("(set 2026-11-26)") for goal in goals) == 2
    # Each share: hotpath's warm read and its floors, at one offered rate, in the same rounds.
    rows = report["open_model"]
    assert [(p["share_of_peak"], p["target"]) for p in rows] == [
        (share, target) for share in (0.5, 0.8) for target in OPEN_MODEL_TARGETS
    ]
    for point in rows:
        assert point["sent"] > 0
        assert point["errors"] == 0, point
        assert 0 < point["p50_ms"] <= point["p99_ms"] <= point["p999_ms"]
        assert len(point["rounds_p99_ms"]) == 2, point
        assert all(p99 > 0 for p99 in point["rounds_p99_ms"]), point
    assert len({(p["share_of_peak"], p["rate"]) for p in rows}) == 2  # one rate a share
    [goal] = [g for g in report["budget"] if g["goal"].startswith("product_get p99 <")]
    assert goal["value"] == rows[0]["p99_ms"]  # hotpath's, not a floor's
    # The split of hotpath's p99, recomputed from the rows: the floor is the bare callable's.
    p99 = {(p["share_of_peak"], p["target"]): p["p99_ms"] for p in rows}
    splits = report["open_model_floor"]
    assert [s["share_of_peak"] for s in splits] == [0.5, 0.8]
    for split in splits:
        share = split["share_of_peak"]
        hot, edge, bare = (p99[share, t] for t in OPEN_MODEL_TARGETS)
        assert (split["p99_ms"], split["box_ms"]) == (hot, bare), split
        assert split["hotpath_ms"] == round(hot - bare, 3), split
        assert split["jobs_ms"] == round(edge - bare, 3), split
        assert split["structure_ms"] == round(hot - edge, 3), split
        assert f"`ceiling_json`'s p99, is {bare} ms" in (tmp_path / "latest.md").read_text()
    # At the goal's share the report says whether the floor alone put 10 ms out of reach.
    floor, p99_half = p99[0.5, "ceiling_json"], p99[0.5, "product_get"]
    written = (tmp_path / "latest.md").read_text()
    said = {
        "out": "The floor alone is at or over the goal's 10 ms" in written,
        "within": "The floor is under the goal's 10 ms" in written,
    }
    assert said == {"out": floor >= 10, "within": floor < 10 <= p99_half}, (floor, p99_half)
    assert len(report["budget_rounds"]) == 2
    hooks = report["webhooks"]
    assert hooks["delivered"] == hooks["events"] == 50
    assert hooks["deliveries_per_second"] > 0
    assert "deliveries/s" in (tmp_path / "latest.md").read_text()
    for round_ in report["budget_rounds"]:
        budgeted = {b.scenario for b in BUDGETS} | {b.ceiling for b in BUDGETS}
        assert set(round_) == budgeted | {edge for _, edge in EDGES.values()} | {NOLIMIT}
        assert all(cpu > 0 for cpu in round_.values())
    for goal in report["budget"][: len(BUDGETS)]:
        assert len(goal["rounds"]) == 2
        assert goal["value"] > 0
    assert report["peak_rss_mb"]["hotpath"] > 10
    rss = report["rss_split"]
    assert 10 < rss["outside_login_mb"] <= max(report["peak_rss_mb"].values())
    assert rss["outside_login_largest"] != "login"
    assert rss["login_mb"] > 10
    assert "Outside the login scenario" in (tmp_path / "latest.md").read_text()
    assert 10 < report["end_rss_mb"]["hotpath"] <= report["peak_rss_mb"]["hotpath"]
    pools = report["ceiling_pools"]
    assert pools["hotpath_pool_cpu_us"] > 0
    assert pools["asyncpg_noreset_cpu_us"] > 0
    compared = {row["peer"]: row for row in report["peer_comparison"]}
    assert set(compared) == {name for name, *_ in PEERS}
    assert all(row["rps_hotpath_over_peer"] > 0 for row in compared.values())
    assert report["rate_limiter_cpu_us_per_request"] is not None
    assert report["rate_limiter_paired"] is True  # from the interleaved rounds
    split = report["ping_split"]
    assert split["jobs"] > 0
    assert split["structure"] > 0
    # Each share is the median of its ratio over the budget's own rounds (checked exactly
    # below, for every split). Their product is only near the ratio, and far from it when one
    # of two 1 s rounds is noisy, as under a loaded make test: it is not what is checked.
    assert split["ping_over_ceiling_json"] == splits_of(report["budget_rounds"])["ping"][0]
    assert "the stack's jobs for `/livez`" in (tmp_path / "latest.md").read_text()
    splits = report["edge_splits"]
    assert set(splits) == set(EDGES)
    recomputed = splits_of(report["budget_rounds"])
    for name, split in splits.items():
        assert split["jobs"] > 0, name
        assert split["structure"] > 0, name
        # ratio = scenario / ceiling, jobs = edge / ceiling, structure = scenario / edge, each
        # the median over the same rounds, as the report says.
        assert (split["ratio"], split["jobs"], split["structure"]) == recomputed[name], name
        if name != "ping":
            assert f"Where {name}'s {split['ratio']}x" in (tmp_path / "latest.md").read_text()
        # Each split says whether its jobs alone leave the budget in reach of any structure.
        assert jobs_verdict(name, split["jobs"]) in (tmp_path / "latest.md").read_text(), name
    assert "closed-loop" in report["load_generator"]

    if shutil.which("npm"):
        artillery = report["artillery"]
        assert artillery["requests"] > 0
        assert artillery["non_2xx"] == 0, artillery
        assert artillery["vusers"]["failed"] == 0, artillery
    else:
        assert report["artillery_skipped"]

    [(name, found)] = report["profiles"].items()
    assert name == "product_get"
    assert found["samples"] > 0
    assert found["top"]
    assert 0 < sum(top["share"] for top in found["top"]) <= 1
    assert (tmp_path / found["svg"]).read_text().lstrip().startswith(("<?xml", "<svg"))

    table = (tmp_path / "latest.md").read_text()
    assert all(f"| {name} |" in table for name in SCENARIOS)
    assert "closed-loop" in table
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
