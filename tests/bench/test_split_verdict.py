"""The report's verdict beside each split: whether a budget is out of reach of any structure
(its jobs alone cost more than it allows) or left to hotpath's structure."""

from __future__ import annotations

import pytest

from bench.suite.budget import BUDGETS, EDGES
from bench.suite.shares import jobs_verdict, split_lines


def limit_of(name: str) -> float:
    [limit] = [b.limit for b in BUDGETS if b.scenario == name and b.ceiling == EDGES[name][0]]
    return limit


@pytest.mark.parametrize("name", sorted(EDGES))
def test_jobs_over_the_budget_say_no_structure_meets_it(name: str) -> None:
    limit = limit_of(name)
    over = jobs_verdict(name, limit + 0.001)
    assert f"over its {limit:g}x budget" in over
    assert "no structure around them meets it" in over
    within = jobs_verdict(name, limit)
    assert f"within its {limit:g}x budget" in within
    assert "at most 1.000x" in within


def test_the_room_left_to_the_structure_is_the_budget_over_the_jobs() -> None:
    assert "at most 1.200x" in jobs_verdict("product_list_first", 1.3 / 1.2)


def test_a_scenario_without_a_budget_against_its_own_ceiling_gets_no_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(EDGES, "made_up", ("ceiling_json", "ceiling_json_edge"))
    assert jobs_verdict("made_up", 9.0) == ""


def test_each_split_sentence_ends_with_its_verdict() -> None:
    splits = {
        "order_place": {
            "ratio": 1.657, "jobs": 1.344, "structure": 1.208, "jobs_us": 160.1,
            "structure_us": 141.3,
        },
        "product_list_deep": {
            "ratio": 1.169, "jobs": 1.193, "structure": 0.991, "jobs_us": 53.5,
            "structure_us": -3.5,
        },
    }  # fmt: skip
    text = "\n".join(split_lines(splits))
    assert "Where order_place's 1.657x ceiling_order goes" in text
    assert "(+141.3 µs). Its jobs alone are over its 1.3x budget" in text
    assert "(-3.5 µs). Its jobs alone are within its 1.3x budget" in text
    assert "at most 1.090x to them." in text
