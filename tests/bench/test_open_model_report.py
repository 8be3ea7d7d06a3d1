"""The open-model step's report: hotpath's p99 split into the box's floor (the bare callable at
the same rate) and hotpath's own part, jobs and structure, from the rows of the same rounds."""

from __future__ import annotations

from typing import Any

from bench.suite.open_model import TARGETS, row
from bench.suite.open_model_report import floor_splits, open_model_lines
from bench.suite.openloop import OpenLoopResult


def result(latencies: list[float], rate: float = 1000.0) -> OpenLoopResult:
    return OpenLoopResult(rate, 1.0, len(latencies), 0, sorted(latencies), 0.5, [0.5] * 10)


def rows(p99: dict[str, float]) -> list[dict[str, Any]]:
    """Rows at 50% whose every latency is the target's p99 given, at 80% hotpath's only."""
    made = [row(target, 0.5, [result([p99[target]] * 100)]) for target in TARGETS]
    return [*made, row("product_get", 0.8, [result([50.0] * 100)])]


def test_hotpath_p99_is_split_into_the_floor_the_jobs_and_the_structure() -> None:
    found = rows({"product_get": 9.0, "ceiling_get_edge": 4.5, "ceiling_json": 3.0})
    # 80% has no floors here: no split for it.
    assert floor_splits(found) == [
        {
            "share_of_peak": 0.5,
            "rate": 1000.0,
            "p99_ms": 9.0,
            "box_ms": 3.0,
            "hotpath_ms": 6.0,
            "jobs_ms": 1.5,
            "structure_ms": 4.5,
        }
    ]


def test_a_row_pools_its_rounds_and_keeps_each_round_p99() -> None:
    slow = result([1.0] * 90 + [20.0] * 10)
    quick = result([1.0] * 100)
    made = row("ceiling_json", 0.5, [slow, quick])
    assert made["sent"] == 200
    assert made["rounds_p99_ms"] == [20.0, 1.0]
    # 10 slow of 200: the pool's p99 (its 198th) is slow, its p50 quick.
    assert (made["p50_ms"], made["p99_ms"]) == (1.0, 20.0)


def test_the_report_has_every_row_and_says_how_much_is_the_box() -> None:
    found = rows({"product_get": 12.0, "ceiling_get_edge": 8.0, "ceiling_json": 7.5})
    text = "\n".join(open_model_lines(found, floor_splits(found), (0.5, 10.0)))
    for target in TARGETS:
        assert f"| 50% | {target} | 1,000 |" in text
    assert "| 80% | product_get |" in text
    assert "product_get's p99 is 12.0 ms" in text
    assert "`ceiling_json`'s p99, is 7.5 ms" in text
    assert "The rest, +4.5 ms, is hotpath's" in text
    assert (
        "+0.5 ms, hotpath's structure around them (product_get over ceiling_get_edge) +4.0" in text
    )
    assert "The floor is under the goal's 10 ms" in text  # 7.5 ms, and 12 is not met
    assert "out of reach" not in text
    assert open_model_lines([], [], (0.5, 10.0)) == []


def test_the_report_says_when_the_box_alone_left_the_goal_out_of_reach() -> None:
    found = rows({"product_get": 30.0, "ceiling_get_edge": 20.0, "ceiling_json": 10.0})
    text = "\n".join(open_model_lines(found, floor_splits(found), (0.5, 10.0)))
    assert "The floor alone is at or over the goal's 10 ms" in text
    assert "within the box's reach" not in text
    # Met: nothing to explain. And only the goal's share is judged (80% has no split here).
    met = rows({"product_get": 9.9, "ceiling_get_edge": 5.0, "ceiling_json": 1.0})
    text = "\n".join(open_model_lines(met, floor_splits(met), (0.5, 10.0)))
    assert "reach" not in text
    assert "reach" not in "\n".join(open_model_lines(found, floor_splits(found), (0.8, 10.0)))
