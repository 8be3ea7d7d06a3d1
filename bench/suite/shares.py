"""What the budget's interleaved rounds say beyond each budget's ratio: how ping's ratio splits
into the stack's jobs and its structure, and what the rate limiter costs the warm read, both
from differences within the same rounds."""

from __future__ import annotations

import statistics

from bench.suite.budget import EDGE, NOLIMIT
from bench.suite.state import Outcome, Results


def limiter_us(results: Results, by_name: dict[str, Outcome]) -> tuple[float | None, bool]:
    """What the rate limiter costs a warm read: the median of the budget rounds' paired
    differences (product_get against product_get_nolimit, measured in alternation), else the
    difference of the two scenarios measured once each (True when paired)."""
    rounds = [r for r in results.budget_rounds if {"product_get", NOLIMIT} <= r.keys()]
    if rounds:
        return round(statistics.median(r["product_get"] - r[NOLIMIT] for r in rounds), 1), True
    ours, unlimited = by_name.get("product_get"), by_name.get(NOLIMIT)
    if ours and unlimited:
        cost = ours.measured.cpu_us_per_request - unlimited.measured.cpu_us_per_request
        return round(cost, 1), False
    return None, False


def ping_split(rounds: list[dict[str, float]]) -> dict[str, float] | None:
    """ping's ratio to ceiling_json as the jobs' share (the edge ceiling over the bare one)
    times the structure's (ping over the edge ceiling), medians of the same rounds."""
    rounds = [r for r in rounds if {"ping", "ceiling_json", EDGE} <= r.keys()]
    if not rounds:
        return None

    def median(top: str, bottom: str) -> float:
        return round(statistics.median(r[top] / r[bottom] for r in rounds), 3)

    return {
        "ping_over_ceiling_json": median("ping", "ceiling_json"),
        "jobs": median(EDGE, "ceiling_json"),
        "structure": median("ping", EDGE),
        "jobs_us": round(statistics.median(r[EDGE] - r["ceiling_json"] for r in rounds), 1),
        "structure_us": round(statistics.median(r["ping"] - r[EDGE] for r in rounds), 1),
    }
