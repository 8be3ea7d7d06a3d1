"""Two server processes on one Redis admit together what one limit allows (within 5%), and
keep limiting, on their own shares, while Redis is down; they go back to the shared budget by
themselves when it returns."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.servers import Redis, running_servers

pytestmark = pytest.mark.slow
RATE = 300  # per second, and the burst
SCRIPT = Path(__file__).with_name("count_statuses.lua")
PATH = "/v1/products?limit=1"  # anonymous: every request spends the address' read budget


@dataclass
class Counts:
    admitted: int
    limited: int
    failed: int
    seconds: float
    failure_status: int  # the last 5xx seen, 0 if none


@pytest.fixture
def replicas(migrated_db: str, throwaway_redis: Redis, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        "HOTPATH_RATE_LIMITS": "true",
        "HOTPATH_RATE_LIMIT_READ": f"{RATE}/1",
        "HOTPATH_RATE_LIMIT_REPLICAS": "2",
        # Connections made up front: a connect in the middle of a saturated event loop (the
        # test drives each process at 100% CPU) can outlast the 1 s acquire timeout.
        "HOTPATH_DB_POOL_MIN": "4",
    }
    with running_servers(
        2,
        database_url=migrated_db,
        redis_url=throwaway_redis.url,
        data_dir=tmp_path,
        extra_env=env,
    ) as bases:
        yield bases


def hammer(bases: list[str], seconds: int) -> list[Counts]:
    """One wrk per server, started together, as fast as they go (far above the limit)."""
    runs = [
        subprocess.Popen(
            ["wrk", "-t1", "-c2", f"-d{seconds}s", "-s", str(SCRIPT), base + PATH],
            stdout=subprocess.PIPE,
            text=True,
        )
        for base in bases
    ]
    counts = []
    for run in runs:
        out, _ = run.communicate(timeout=seconds + 30)
        found = re.search(r"COUNTS (\d+) (\d+) (\d+) (\d+) (\d+)", out)
        assert found, out
        a, limited, failed, micros, status = (int(group) for group in found.groups())
        counts.append(Counts(a, limited, failed, micros / 1e6, status))
    return counts


def fallback_active(base: str) -> bool:
    text = httpx.get(base + "/metrics").text
    return bool(re.search(r"^hotpath_rate_limit_fallback_active(\{[^}]*\})? 1(\.0)?$", text, re.M))


def test_two_processes_admit_one_limit_together(replicas: list[str]) -> None:
    counts = hammer(replicas, 3)
    offered = sum(c.admitted + c.limited for c in counts)
    seconds = max(c.seconds for c in counts)
    assert offered / seconds > 1000  # "a thousand requests a second against one key"
    assert sum(c.failed for c in counts) == 0
    admitted = sum(c.admitted for c in counts)
    expected = RATE + RATE * seconds  # the burst, then the rate
    assert abs(admitted - expected) <= 0.05 * expected, (admitted, expected, counts)


def test_redis_down_each_process_limits_on_its_share_then_recovers(
    replicas: list[str], throwaway_redis: Redis
) -> None:
    hammer(replicas, 1)  # spend the shared burst
    throwaway_redis.kill()
    counts = hammer(replicas, 3)
    assert sum(c.failed for c in counts) == 0, counts  # no 5xx while the store is gone
    assert all(fallback_active(base) for base in replicas)
    for c in counts:
        # Each process on its own: limit / replicas per second, plus its own share of burst.
        share = RATE / 2
        assert c.admitted <= share + share * c.seconds * 1.05, counts
        assert c.admitted >= share * c.seconds * 0.8, counts

    throwaway_redis.start()
    deadline = time.monotonic() + 15
    while any(fallback_active(base) for base in replicas):
        assert time.monotonic() < deadline, "the limiter never went back to Redis"
        httpx.get(replicas[0] + PATH)
        httpx.get(replicas[1] + PATH)
        time.sleep(0.2)
    counts = hammer(replicas, 2)
    admitted = sum(c.admitted for c in counts)
    seconds = max(c.seconds for c in counts)
    assert admitted <= RATE + RATE * seconds * 1.05  # one shared budget again
    assert sum(c.failed for c in counts) == 0
