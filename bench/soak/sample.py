"""What a soak run samples from the server between two load windows: resident memory and open
file descriptors of its process tree (from /proc), and the connection pool's state from its
own /metrics."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import httpx

from bench.suite.procs import rss_bytes, tree
from server.db.pool_metrics import COUNT, MAX, PENDING, TIMEOUTS

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.MULTILINE)
_STATE = re.compile(r'db_client_connection_state="([a-z]+)"')


@dataclass(frozen=True)
class Process:
    rss_mb: float  # the largest RSS of any one process of the tree (the per-worker figure)
    rss_total_mb: float
    fds: int  # open file descriptors, the whole tree
    processes: int
    load: float  # the machine's 1-minute load average: a shared box's p99 moves with it


@dataclass(frozen=True)
class Pool:
    idle: float
    used: float
    max: float
    pending: float
    timeouts: float  # a counter: the total so far


def process(root: int) -> Process:
    sizes, fds, pids = [], 0, tree(root)
    for pid in pids:
        sizes.append(rss_bytes(pid))
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (FileNotFoundError, PermissionError):
            continue
    mb = 1024 * 1024
    load = os.getloadavg()[0]
    return Process(max(sizes, default=0) / mb, sum(sizes) / mb, fds, len(pids), load)


def pool(base: str) -> Pool:
    """The pool's gauges, summed over pools and workers, from one scrape of /metrics."""
    text = httpx.get(base + "/metrics", timeout=10).raise_for_status().text
    found = {"idle": 0.0, "used": 0.0, "max": 0.0, "pending": 0.0, "timeouts": 0.0}
    for name, labels, value in _SAMPLE.findall(text):
        if name == COUNT:
            state = _STATE.search(labels or "")
            if state and state.group(1) in ("idle", "used"):
                found[state.group(1)] += float(value)
        elif name == MAX:
            found["max"] += float(value)
        elif name == PENDING:
            found["pending"] += float(value)
        elif name in (TIMEOUTS, TIMEOUTS + "_total"):
            found["timeouts"] += float(value)
    return Pool(**found)
