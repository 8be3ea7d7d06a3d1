"""The report's RSS split (bench/suite/rss.py): the worker's peak outside the login scenario
against the budget, and what the login scenario adds, from the windows each scenario ran in."""

from __future__ import annotations

from bench.suite.report import HOTPATH_SERVERS, markdown, summarize
from bench.suite.rss import BUDGET_ROUNDS, MB
from bench.suite.state import Options, Outcome, Results
from bench.suite.wrk import Measured


def _results(windows: dict[str, float], servers: dict[str, str]) -> Results:
    results = Results("2026-12-07T10:00:00+00:00", Options())
    for name, server in servers.items():
        measured = Measured(1000, 1.0, 0, 0, 1.0, 1.0, 1.0, 1.0, 0.05)
        results.outcomes.append(Outcome(name, server, None, name, measured))
    results.scenario_rss = {name: int(mb * MB) for name, mb in windows.items()}
    return results


def test_the_login_window_is_split_off_and_other_servers_are_left_out() -> None:
    results = _results(
        {"ping": 80, "mixed": 96, "login": 220, "ceiling_order": 300, BUDGET_ROUNDS: 90},
        {"ping": "hotpath", "mixed": "hotpath", "login": "hotpath", "ceiling_order": "x"},
    )
    summary = summarize(results)
    assert summary["rss_split"] == {
        "outside_login_mb": 96.0,
        "outside_login_largest": "mixed",
        "outside_login_met": True,
        "login_mb": 220.0,
        "login_adds_mb": 124.0,
    }
    text = markdown(summary)
    assert "peaked at 96.0 MB (during mixed), under the 120 MB budget" in text
    assert "while login ran it peaked at 220.0 MB, +124.0 MB" in text


def test_a_worker_over_the_budget_outside_logins_is_said_to_be() -> None:
    results = _results({"ping": 80, BUDGET_ROUNDS: 130}, {"ping": HOTPATH_SERVERS[1]})
    split = summarize(results)["rss_split"]
    assert split["outside_login_largest"] == BUDGET_ROUNDS
    assert split["outside_login_met"] is False
    assert split["login_mb"] is None
    assert "130.0 MB (during budget rounds), over the 120 MB budget." in markdown(
        summarize(results)
    )
