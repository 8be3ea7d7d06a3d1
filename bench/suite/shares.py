"""What the budget's interleaved rounds say beyond each budget's ratio: how the ratios of the
scenarios with an edge ceiling split into their jobs and hotpath's structure, and what the
rate limiter costs the warm read, both from differences within the same rounds."""

from __future__ import annotations

import statistics

from bench.suite.budget import BUDGETS, EDGES, NOLIMIT
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
    split = edge_split(rounds, "ping", *EDGES["ping"])
    if split is None:
        return None
    return {
        "ping_over_ceiling_json": split["ratio"],
        **{k: v for k, v in split.items() if k != "ratio"},
    }


def edge_splits(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each scenario with an edge ceiling (budget.EDGES): its split, when the rounds have it."""
    splits = {name: edge_split(rounds, name, *pair) for name, pair in EDGES.items()}
    return {name: split for name, split in splits.items() if split is not None}


def edge_split(
    rounds: list[dict[str, float]], scenario: str, ceiling: str, edge: str
) -> dict[str, float] | None:
    """``scenario``'s ratio to ``ceiling`` as the jobs' share (``edge`` over ``ceiling``) times
    the structure's (``scenario`` over ``edge``), medians of the same rounds, and each as µs."""
    rounds = [r for r in rounds if {scenario, ceiling, edge} <= r.keys()]
    if not rounds:
        return None

    def median(top: str, bottom: str) -> float:
        return round(statistics.median(r[top] / r[bottom] for r in rounds), 3)

    return {
        "ratio": median(scenario, ceiling),
        "jobs": median(edge, ceiling),
        "structure": median(scenario, edge),
        "jobs_us": round(statistics.median(r[edge] - r[ceiling] for r in rounds), 1),
        "structure_us": round(statistics.median(r[scenario] - r[edge] for r in rounds), 1),
    }


# What each edge ceiling does besides ping's jobs (bench/ceilings/product_edge.py, order_edge.py).
_LIST_JOBS = (
    "the rate limiter and the query's validation (hotpath's read_query, listing_of and cursor "
    "check) around ceiling_list's page"
)
_JOBS = {
    "product_get": "the token check with its verified-token cache, the rate limiter's local "
    "lease check and its headers, the product cache's prepared bytes",
    "product_get_nocache": "the token check, the rate limiter, and ceiling_pk's primary-key lookup",
    "product_list_first": _LIST_JOBS,
    "product_list_deep": _LIST_JOBS,
    "order_place": "the body limit, the token check, the rate limiter, the Idempotency-Key "
    "check, the body's decoding and validation, and after ceiling_order's transaction the "
    "product cache's invalidation (one Redis call for all the order's products, and the "
    "process receiving its own invalidation back on its subscription)",
}


def split_lines(splits: dict[str, dict[str, float]]) -> list[str]:
    """The report's sentence for each split but ping's (which has its own)."""
    lines = []
    for name, jobs in _JOBS.items():
        split = splits.get(name)
        if split is None:
            continue
        ceiling, edge = EDGES[name]
        lines += [
            "",
            f"Where {name}'s {split['ratio']}x {ceiling} goes, in the same rounds: its jobs in "
            f"their cheapest form, fused into one callable (`{edge}`: ping's jobs plus {jobs}, "
            f"each through hotpath's own code), cost {split['jobs']}x {ceiling} "
            f"({split['jobs_us']:+} µs); hotpath's structure around the same jobs "
            f"{split['structure']}x more ({split['structure_us']:+} µs)."
            + jobs_verdict(name, split["jobs"]),
        ]
    return lines


def jobs_verdict(name: str, jobs: float) -> str:
    """What the split says of ``name``'s budget against its own ceiling: whether its jobs
    alone, done as cheaply as hotpath knows how with no structure at all, already cost more
    than the budget allows (then no design of the structure meets it, only cheaper or fewer
    jobs), or leave room that hotpath's structure takes."""
    ceiling = EDGES[name][0]
    limit = next((b.limit for b in BUDGETS if b.scenario == name and b.ceiling == ceiling), None)
    if limit is None:
        return ""
    if jobs > limit:
        return (
            f" Its jobs alone are over its {limit:g}x budget: no structure around them meets "
            "it, only cheaper or fewer jobs would."
        )
    return (
        f" Its jobs alone are within its {limit:g}x budget: what is over it (if anything) is "
        f"hotpath's structure, which may add at most {limit / jobs:.3f}x to them."
    )
