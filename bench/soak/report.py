"""Whether a soak stayed flat, and its report: bench/results/soak-<date>.md (the verdict and
every window) and .json (everything).

Flat means: the median of the last 10% of the windows is within a ratio (plus a little
absolute slack, for small numbers and a shared box) of the median of the first 10%, for
each process' resident memory, the open descriptors, p99 latency and the pool's connections
in use and requests waiting; and no window had an error or a pool timeout.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.soak.run import Soak, Window
from bench.suite.report import _machine

SHARE = 0.10  # the first and the last tenth of the windows are compared


@dataclass(frozen=True)
class Rule:
    name: str
    unit: str
    value: Callable[[Window], float]
    ratio: float  # last may be at most first * ratio + slack
    slack: float


RULES = (
    Rule("RSS, largest process", "MB", lambda w: w.process.rss_mb, 1.10, 5.0),
    Rule("RSS, all processes", "MB", lambda w: w.process.rss_total_mb, 1.10, 10.0),
    Rule("open file descriptors", "", lambda w: w.process.fds, 1.10, 8.0),
    Rule("p99 latency", "ms", lambda w: w.measured.p99_ms, 1.50, 2.0),
    # An instant's count under load, noisy in small numbers: a leak pins it at the maximum.
    Rule("pool connections in use", "", lambda w: w.pool.used, 1.50, 4.0),
    Rule("requests waiting for the pool", "", lambda w: w.pool.pending, 1.50, 2.0),
)


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    first: float
    last: float

    @property
    def limit(self) -> float:
        return self.first * self.rule.ratio + self.rule.slack

    @property
    def flat(self) -> bool:
        return self.last <= self.limit


def verdicts(soak: Soak) -> list[Verdict]:
    windows = soak.windows
    if len(windows) < 2:
        raise ValueError("a soak needs at least two windows to compare")
    size = max(1, round(len(windows) * SHARE))
    first, last = windows[:size], windows[-size:]
    return [
        Verdict(
            rule,
            statistics.median(rule.value(w) for w in first),
            statistics.median(rule.value(w) for w in last),
        )
        for rule in RULES
    ]


def failures(soak: Soak) -> list[str]:
    """Everything that makes the run not flat (empty: it was)."""
    found = [
        f"{v.rule.name}: {v.last:.1f} in the last tenth > {v.limit:.1f} "
        f"({v.first:.1f} in the first tenth x {v.rule.ratio} + {v.rule.slack})"
        for v in verdicts(soak)
        if not v.flat
    ]
    for w in soak.windows:
        m = w.measured
        if m.http_errors or m.socket_errors:
            found.append(f"window {w.index}: {m.http_errors} HTTP, {m.socket_errors} socket errors")
    timeouts = soak.windows[-1].pool.timeouts - soak.windows[0].pool.timeouts
    if timeouts:
        found.append(f"{timeouts:.0f} pool waits timed out during the run")
    return found


def markdown(soak: Soak, machine: dict[str, Any]) -> str:
    o = soak.options
    wrong = failures(soak)
    lines = [
        f"# Soak {soak.started}",
        "",
        f"{o.minutes:g} minutes of `bench/load/mixed.lua` (80% product reads, 10% list pages, "
        f"10% orders) against one hotpath server (granian, one worker, production settings), "
        f"wrk with {o.connections} connections in {len(soak.windows)} windows of "
        f"{o.interval:g} s after {o.warmup:g} s of warm-up; {o.products:,} products, "
        f"{o.accounts} customers (tokens renewed {soak.relogins} times). Sampled halfway "
        f"through each window. Machine: {machine['cpu']}, {machine['cores']} cores, Python "
        f"{machine['python']}, granian {machine['granian']}; `load` is the machine's 1-minute "
        "load average (the box is shared: p99 moves with it).",
        "",
        f"**{'Flat' if not wrong else 'Not flat'}**: the median of the last "
        f"{SHARE:.0%} of the windows against the median of the first {SHARE:.0%}.",
        "",
        "| measure | first | last | limit | flat |",
        "|---|---:|---:|---:|:---:|",
    ]
    for v in verdicts(soak):
        unit = f" {v.rule.unit}" if v.rule.unit else ""
        lines.append(
            f"| {v.rule.name} | {v.first:.1f}{unit} | {v.last:.1f}{unit} | "
            f"{v.limit:.1f}{unit} (x{v.rule.ratio} + {v.rule.slack:g}) | "
            f"{'yes' if v.flat else '**no**'} |"
        )
    lines += ["", *(f"- {problem}" for problem in wrong), ""] if wrong else [""]
    lines += [
        "| t s | req/s | p50 ms | p99 ms | errors | RSS max MB | RSS all MB | fds | "
        "pool idle | used | waiting | timeouts | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in soak.windows:
        m, p, q = w.measured, w.process, w.pool
        lines.append(
            f"| {w.at:.0f} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
            f"{m.http_errors + m.socket_errors} | {p.rss_mb:.1f} | {p.rss_total_mb:.1f} | "
            f"{p.fds} | {q.idle:.0f} | {q.used:.0f} | {q.pending:.0f} | {q.timeouts:.0f} | "
            f"{p.load:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write(soak: Soak, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = soak.started.replace(":", "-").removesuffix("+00-00")
    machine = _machine()
    paths = {"md": directory / f"soak-{stamp}.md", "json": directory / f"soak-{stamp}.json"}
    paths["md"].write_text(markdown(soak, machine))
    document = {
        "soak": dataclasses.asdict(soak),
        "machine": machine,
        "verdicts": [
            {
                "measure": v.rule.name,
                "first": v.first,
                "last": v.last,
                "limit": v.limit,
                "flat": v.flat,
            }
            for v in verdicts(soak)
        ],
        "failures": failures(soak),
    }
    paths["json"].write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return paths
