"""The open-model step in the report: the table of every target's pooled percentiles and each
share's split of hotpath's p99 into the box's floor and hotpath's own part
(bench/suite/open_model.py measures them)."""

from __future__ import annotations

from typing import Any

from bench.suite.open_model import FLOORS, HOTPATH

BARE, EDGE = FLOORS


def floor_splits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each share with all three targets: hotpath's p99, the bare callable's at the same
    rate (the box: generator, scheduler, granian), and the differences between the p99s of the
    same rounds: the warm read's jobs (the edge ceiling over the bare one) and hotpath's
    structure around them (hotpath over the edge ceiling)."""
    by = {(r["share_of_peak"], r["target"]): r for r in rows}
    splits = []
    for share in dict.fromkeys(r["share_of_peak"] for r in rows):
        if not all((share, t) in by for t in (HOTPATH, *FLOORS)):
            continue
        p99, box, edge = (by[share, t]["p99_ms"] for t in (HOTPATH, BARE, EDGE))
        splits.append(
            {
                "share_of_peak": share,
                "rate": by[share, HOTPATH]["rate"],
                "p99_ms": p99,
                "box_ms": box,
                "hotpath_ms": round(p99 - box, 3),
                "jobs_ms": round(edge - box, 3),
                "structure_ms": round(p99 - edge, 3),
            }
        )
    return splits


def open_model_lines(
    rows: list[dict[str, Any]], splits: list[dict[str, Any]], goal: tuple[float, float]
) -> list[str]:
    """The table and each share's split; at ``goal`` (share of the peak, p99 ms) also whether
    the floor alone left the goal out of reach in this run."""
    if not rows:
        return []
    rounds = max(len(r["rounds_p99_ms"]) for r in rows)
    lines = [
        "",
        f"The warm read (`{HOTPATH}`) offered at fixed rates, shares of the peak wrk measured "
        "above, each request's latency counted from the moment it was due "
        "(`bench/suite/openloop.py`: no coordinated omission), and at the same rates the box's "
        f"floors: `{BARE}` (the bare callable on the same granian) and `{EDGE}` (the warm "
        "read's jobs fused into one callable, no structure). Each share is "
        f"{rounds} rounds of one run per target in alternation, each run after a warm-up at "
        "the same rate; a row pools its rounds (p99 per round beside). A large send lag means "
        "the generator itself fell behind, and the latencies measure its backlog too.",
        "",
        "| share of peak | target | req/s offered | p50 ms | p99 ms | p99.9 ms | p99 per round "
        "| errors | send lag p99 ms |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        per_round = ", ".join(f"{p:g}" for p in r["rounds_p99_ms"])
        lines.append(
            f"| {r['share_of_peak']:.0%} | {r['target']} | {r['rate']:,.0f} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['p999_ms']} | {per_round} | {r['errors']} | "
            f"{r['send_lag_p99_ms']} |"
        )
    for s in splits:
        lines += [
            "",
            f"At {s['share_of_peak']:.0%} of the peak ({s['rate']:,.0f} req/s), "
            f"{HOTPATH}'s p99 is {s['p99_ms']} ms. The box's floor at the same rate, "
            f"`{BARE}`'s p99, is {s['box_ms']} ms: the generator, the scheduler and granian "
            "with nothing of hotpath in them (a lower bound: the bare callable leaves the "
            f"generator more CPU than hotpath does). The rest, {s['hotpath_ms']:+} ms, is "
            f"hotpath's: the warm read's jobs ({EDGE} over {BARE}) {s['jobs_ms']:+} ms, "
            f"hotpath's structure around them ({HOTPATH} over {EDGE}) "
            f"{s['structure_ms']:+} ms. Each is a difference between p99s of the same rounds, "
            "not a time that one request spent.",
        ]
        if s["share_of_peak"] == goal[0]:
            lines[-1] += verdict(s, goal[1])
    return lines


def verdict(split: dict[str, Any], goal_ms: float) -> str:
    """Whether the box let the goal be met in this run, when it was not."""
    if split["box_ms"] >= goal_ms:
        return (
            f" The floor alone is at or over the goal's {goal_ms:g} ms: in this run the box "
            "left it out of reach for any server, hotpath's part aside."
        )
    if split["p99_ms"] >= goal_ms:
        return (
            f" The floor is under the goal's {goal_ms:g} ms: in this run the goal was within "
            "the box's reach, and hotpath's part kept the read from it."
        )
    return ""
