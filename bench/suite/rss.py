"""The RSS budget (< 120 MB per worker) split in the same run: the worker's peak while each
scenario ran, so the report can say where it stands outside the login scenario and what logins
add (argon2id's working memory: 64 MiB for every hash in flight, given back when it ends)."""

from __future__ import annotations

from typing import Any

from bench.suite.state import Results

MB = 1024 * 1024
LOGIN = "login"
# The budget rounds' hotpath servers, sampled over all their rounds (no login among them).
BUDGET_ROUNDS = "budget rounds"


def rss_split(results: Results, servers: tuple[str, ...], limit_mb: float) -> dict[str, Any] | None:
    """The largest per-process peak of hotpath's servers over every window but the login
    scenario's, the login scenario's, and their difference (None before any window)."""
    mine = {o.name for o in results.outcomes if o.server in servers} | {BUDGET_ROUNDS}
    windows = {k: v / MB for k, v in results.scenario_rss.items() if k in mine}
    outside = {k: v for k, v in windows.items() if k != LOGIN}
    if not outside:
        return None
    largest = max(outside, key=outside.__getitem__)
    split: dict[str, Any] = {
        "outside_login_mb": round(outside[largest], 1),
        "outside_login_largest": largest,
        "outside_login_met": outside[largest] < limit_mb,
        "login_mb": None,
        "login_adds_mb": None,
    }
    if LOGIN in windows:
        split["login_mb"] = round(windows[LOGIN], 1)
        split["login_adds_mb"] = round(windows[LOGIN] - outside[largest], 1)
    return split


def rss_lines(split: dict[str, Any] | None, limit_mb: float) -> list[str]:
    if split is None:
        return []
    verdict = "under" if split["outside_login_met"] else "over"
    line = (
        f"Outside the login scenario hotpath's largest process peaked at "
        f"{split['outside_login_mb']} MB (during {split['outside_login_largest']}), {verdict} "
        f"the {limit_mb:g} MB budget"
    )
    if split["login_mb"] is not None:
        line += (
            f"; while login ran it peaked at {split['login_mb']} MB, "
            f"{split['login_adds_mb']:+} MB: argon2id's 64 MiB for every hash in flight "
            "(at most `HOTPATH_PASSWORD_HASH_CONCURRENCY` at once)"
        )
    return ["", line + "."]
