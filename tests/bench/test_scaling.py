"""The scaling figures (bench/suite/scaling.py, ``make bench-scaling``): the WAL and counter
arithmetic on known input, and the whole module in smoke mode, so it cannot rot. Smoke mode
measures nothing worth quoting; it checks what must hold however busy the box is (an order
commits a transaction, a warm read does not need one)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.suite.resources import Snapshot, database_bytes, window
from bench.suite.scaling_report import model
from tests.fixtures.bench_runs import run_module


def _record(rmgr: str, rec: int, tot: int, xid: int, desc: str) -> str:
    """A line as pg_waldump 15 prints it."""
    return (
        f"rmgr: {rmgr:<11} len (rec/tot): {rec:>6}/{tot:>6}, tx: {xid:>10}, "
        f"lsn: 0/01523F80, prev 0/01523F48, desc: {desc}"
    )


# Database 16384 is ours, 99999 someone else's.
WALDUMP = [
    _record("Heap", 79, 79, 743, "INSERT off 12 flags 0x00, blkref #0: rel 1663/16384/16390 blk 0"),
    _record("Btree", 64, 64, 743, "INSERT_LEAF off 12, blkref #0: rel 1663/16384/16393 blk 1"),
    _record("Transaction", 34, 34, 743, "COMMIT 2026-12-07 06:30:00.000001 UTC"),
    _record("Heap", 79, 250, 744, "INSERT off 3, blkref #0: rel 1663/99999/16390 blk 0 FPW"),
    _record("Transaction", 34, 34, 744, "COMMIT 2026-12-07 06:30:00.000002 UTC"),
    _record("Standby", 50, 50, 0, "RUNNING_XACTS nextXid 745 latestCompletedXid 744"),
    _record("XLOG", 49, 8241, 0, "FPI_FOR_HINT , blkref #0: rel 1663/16384/16390 blk 5 FPW"),
]


def test_wal_of_a_database_is_its_records_and_its_transactions_commits() -> None:
    assert database_bytes(WALDUMP, 16384) == 79 + 64 + 34 + 8241
    assert database_bytes(WALDUMP, 99999) == 250 + 34
    assert database_bytes(WALDUMP, 1) == 0


def test_a_window_is_the_difference_of_two_snapshots() -> None:
    before = Snapshot(10.0, 100, {1: 2.0, 2: 1.0}, 5000, {"evalsha": 7, "publish": 1}, 3.0)
    # Backend 2 exited (its CPU is lost, and said so in the module), 3 is new.
    after = Snapshot(25.0, 160, {1: 2.5, 3: 0.25}, 9000, {"evalsha": 7, "get": 4}, 3.5, 3)
    part = window(before, after)
    assert part.seconds == 15.0
    assert part.xacts == 60
    assert part.backend_cpu == pytest.approx(0.75)
    assert part.backends == 2
    assert (part.wal_start, part.wal_end) == (5000, 9000)
    assert part.redis_calls == {"get": 4, "publish": -1}
    assert part.redis_cpu == pytest.approx(0.5)
    assert part.redis_clients == 3


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_scaling_figures_run_end_to_end_in_smoke_mode(tmp_path: Path) -> None:
    run_module("bench.suite.scaling", "--smoke", "--out", str(tmp_path), timeout=360)
    [found] = tmp_path.glob("scaling-*.json")
    report = orjson.loads(found.read_bytes())
    rows = {row["name"]: row for row in report["scenarios"]}
    assert list(rows) == ["warm_read", "warm_read_clients", "list_page", "order", "uncached_read"]
    for name, row in rows.items():
        assert row["requests"] > 0, name
        assert row["errors"] == 0, row
        assert row["hotpath_cpu_us"] > 0, name
        assert row["pg_backends"] >= 1, name
    # Every order and every uncached read commits at least one transaction; a warm read
    # is answered from the product cache (the few of the smoke run's products not yet
    # cached read PostgreSQL once).
    assert rows["order"]["pg_xacts"] >= 0.9
    assert rows["uncached_read"]["pg_xacts"] >= 0.9
    assert rows["warm_read"]["pg_xacts"] < 0.5
    assert rows["order"]["pg_backend_cpu_us"] > 0
    # A client address seen once is a rate-limit key no lease of the process covers: Redis
    # is asked (the limiter's script) for nearly every such request.
    assert rows["warm_read_clients"]["redis_commands"] > 0.5
    # The WAL of the database: read with pg_waldump where this user may read the WAL.
    order = rows["order"]
    assert (order["wal_bytes"] or 0) > 0 or order["wal_unavailable"]
    assert report["idle"]["seconds"] > 0
    example = report["model"]
    assert example["hotpath_workers"] > 0
    assert example["connections_without_pooler_primary"] == example["hotpath_workers"] * 10
    markdown = found.with_suffix(".md").read_text()
    assert "| warm_read |" in markdown
    assert "Worked example" in markdown


def test_the_worked_example_is_the_rates_times_the_costs() -> None:
    def row(
        hotpath: float, pg_cpu: float, xacts: float, wal: float | None, redis: float
    ) -> dict[str, float | None]:
        return {
            "hotpath_cpu_us": hotpath,
            "pg_backend_cpu_us": pg_cpu,
            "pg_xacts": xacts,
            "wal_bytes": wal,
            "redis_commands": redis,
            "redis_cpu_us": redis * 4,
        }

    rows: dict[str, dict[str, Any]] = {
        "warm_read": row(100, 0, 0, 0, 0),
        "warm_read_clients": row(200, 0, 0, 0, 4),
        "uncached_read": row(150, 40, 1, 0, 0),
        "list_page": row(300, 120, 1, 0, 0),
        "order": row(1000, 800, 1, 3000, 3),
    }
    idle = {"pg_xacts_per_s": 2.0, "redis_commands_per_s": 5.0, "pg_backend_cpu_ms_per_s": 1.0}
    example = model(rows, idle, pool_max=10)
    # 84,444 warm, 4,444 misses, 11,111 list pages and 2,000 orders a second.
    assert example["rates"] == {
        "warm_read": 84444,
        "uncached_read": 4444,
        "list_page": 11111,
        "order": 2000,
    }
    busy = (84444.4 * 100 + 4444.4 * 150 + 11111.1 * 300 + 2000 * 1000) / 1e6
    assert example["hotpath_cores"] == pytest.approx(busy, abs=0.05)
    workers = math.ceil(busy / 0.7)
    assert example["hotpath_workers"] == workers
    assert example["primary_backend_cores"] == pytest.approx(1.6)
    assert example["primary_xacts_per_s"] == 2000 + 2 * workers
    assert example["wal_mb_per_s"] == pytest.approx(6.0)
    standby = (4444.4 * 40 + 11111.1 * 120) / 1e6
    assert example["standby_backend_cores"] == pytest.approx(standby, abs=0.005)
    assert example["connections_without_pooler_primary"] == workers * 10
    assert example["redis_ops_per_s"] == round(2000 * 3 + 5 * workers)
    # The limiter's worst case: every warm read a script of its own.
    assert example["redis_ops_per_s_sparse_clients"] == round(84444.4 * 4 + 2000 * 3 + 5 * workers)
