"""How long a logical backup and its checked restore take (python -m server backup, then
restore --verify into a new database), on a throwaway cluster holding ``orders`` orders.
The commands run as an operator runs them: child processes, timed from the outside."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.recovery.measure import DATABASE, load_orders
from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR, ROOT
from tests.fixtures.cluster import ThrowawayPostgres


@dataclass(frozen=True, slots=True)
class LogicalRound:
    orders: int
    dump_mb: float
    backup_seconds: float
    restore_verify_seconds: float


def _server(*args: str, database_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTPATH_", "PROMETHEUS_"))}
    env["DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


async def measure_logical(orders: int) -> LogicalRound:
    cluster = ThrowawayPostgres()
    try:
        cluster.init()
        cluster.start()
        url = await cluster.create_database(DATABASE)
        await migrate(url, MIGRATIONS_DIR)
        await load_orders(url, orders, "base")
        with tempfile.TemporaryDirectory(prefix="hotpath-bench-backup-") as folder:
            began = time.monotonic()
            dump = Path(_server("backup", "--to", folder, database_url=url))
            backed_up = time.monotonic()
            _server("restore", str(dump), "--into", cluster.url("restored"), "--verify",
                    database_url=url)  # fmt: skip
            restored = time.monotonic()
            size = os.stat(dump).st_size
        return LogicalRound(orders, size / 2**20, backed_up - began, restored - backed_up)
    finally:
        cluster.stop()
