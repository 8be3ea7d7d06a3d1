"""What one load window cost the server's dependencies: PostgreSQL's transactions and backend CPU
for one database, the WAL written, and a Redis's commands and CPU, read before and after.

PostgreSQL is the shared server (the bench's private database on it): its transaction counters
are per database, and a backend's CPU is read from /proc for the pids pg_stat_activity lists for
that database (the monitoring connection here uses another database, so it is not counted).
PostgreSQL 15 keeps a backend's counters in the backend until it flushes them, at most once a
second while busy and 10 s (PGSTAT_IDLE_INTERVAL) after it goes idle: a reading taken right
after a load misses part of it, so ``settle`` waits that out before each reading.

The WAL position is the whole cluster's, which other users of the shared server move too;
``wal_of_database`` reads the window's records with pg_waldump and keeps those of this database
and of the transactions that touched it (their commit records included). Those users write
enough WAL for checkpoints to recycle a window's segments before it ends: ``wal_kept`` holds a
temporary replication slot over the window so that they stay.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.suite.procs import cpu_seconds
from bench.suite.setup import ADMIN_URL

# PostgreSQL 15's PGSTAT_IDLE_INTERVAL (10 s) and a margin: by then every idle backend has
# flushed what it counted.
SETTLE_SECONDS = 10.5
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    xacts: int  # xact_commit + xact_rollback of the database
    backend_cpu: dict[int, float]  # pid -> CPU seconds, the database's client backends
    wal_lsn: int  # pg_current_wal_lsn() in bytes, the whole cluster
    redis_calls: dict[str, int]  # command -> calls (INFO commandstats)
    redis_cpu: float  # the redis-server's CPU seconds
    redis_clients: int = 0  # connections, the one reading them not counted


@dataclass(frozen=True)
class Window:
    """What happened between two snapshots."""

    seconds: float
    xacts: int
    backend_cpu: float  # seconds; a backend that exited within the window is not counted
    backends: int  # client backends of the database at the end
    wal_start: int
    wal_end: int
    redis_calls: dict[str, int]
    redis_cpu: float
    redis_clients: int  # at the end

    @property
    def redis_total(self) -> int:
        return sum(self.redis_calls.values())


def settle() -> None:
    time.sleep(SETTLE_SECONDS)


def snapshot(database: str, redis_port: int, redis_pid: int) -> Snapshot:
    xacts, pids, lsn = asyncio.run(_postgres(database))
    calls, clients = redis_stats(redis_port)
    return Snapshot(
        at=time.monotonic(),
        xacts=xacts,
        backend_cpu={pid: cpu_seconds(pid) for pid in pids},
        wal_lsn=lsn,
        redis_calls=calls,
        redis_cpu=cpu_seconds(redis_pid),
        redis_clients=clients,
    )


def window(before: Snapshot, after: Snapshot) -> Window:
    calls = Counter(after.redis_calls)
    calls.subtract(before.redis_calls)
    return Window(
        seconds=after.at - before.at,
        xacts=after.xacts - before.xacts,
        backend_cpu=sum(
            cpu - before.backend_cpu.get(pid, 0.0) for pid, cpu in after.backend_cpu.items()
        ),
        backends=len(after.backend_cpu),
        wal_start=before.wal_lsn,
        wal_end=after.wal_lsn,
        redis_calls={name: n for name, n in sorted(calls.items()) if n},
        redis_cpu=after.redis_cpu - before.redis_cpu,
        redis_clients=after.redis_clients,
    )


async def _postgres(database: str) -> tuple[int, list[int], int]:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        xacts = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = $1 AND backend_type = 'client backend'",
            database,
        )
        lsn = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        return int(xacts), [int(row["pid"]) for row in pids], int(lsn)
    finally:
        await conn.close()


# Commands the measuring itself sends (redis-cli's INFO), not the server under test.
_OURS = frozenset({"info", "command", "command|docs"})


def redis_stats(port: int) -> tuple[dict[str, int], int]:
    """Calls per command (INFO commandstats) and connected clients, redis-cli's own taken off."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "clients", "commandstats"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    calls: dict[str, int] = {}
    clients = 0
    for line in done.stdout.splitlines():
        if line.startswith("connected_clients:"):
            clients = int(line.split(":")[1]) - 1
        # cmdstat_evalsha:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0
        if line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_") :].partition(":")
            if name not in _OURS:
                calls[name] = int(fields.split(",")[0].removeprefix("calls="))
    return calls, clients


def database_facts(database: str) -> tuple[int, str, int]:
    """The database's oid, the cluster's data directory (where pg_waldump reads) and its
    timeline."""

    async def facts() -> tuple[int, str, int]:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", database)
            data = await conn.fetchval("SHOW data_directory")
            line = await conn.fetchval("SELECT timeline_id FROM pg_control_checkpoint()")
            return int(oid), str(data), int(line)
        finally:
            await conn.close()

    return asyncio.run(facts())


@contextmanager
def wal_kept() -> Iterator[bool]:
    """The cluster keeps every WAL segment from here to the block's end: a temporary physical
    replication slot, reserved at once, held by a psql session that ends with the block (or
    with this process: a temporary slot goes with its session, so none is left behind).
    Yields whether the slot was made (not, for instance, without a free slot)."""
    holder = subprocess.Popen(
        ["psql", ADMIN_URL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    holder.stdin.write(
        "SELECT 1 FROM pg_create_physical_replication_slot("
        "'hotpath_bench_' || md5(random()::text), true, true);\n"
    )
    holder.stdin.flush()
    try:
        yield holder.stdout.readline().strip() == "1"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


_RECORD = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),")
_RELATION = re.compile(r"rel \d+/(\d+)/\d+")


def _lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def wal_of_database(data_dir: str, timeline: int, oid: int, start: int, end: int) -> int | str:
    """Bytes of WAL between ``start`` and ``end`` that belong to database ``oid``: records
    touching its relations, and every record of a transaction that did (its commit). Full
    page images count (they are part of a record's total length). A string says why it could
    not be read (pg_waldump missing, the WAL not readable by this user, segments recycled)."""
    waldump = PG_BIN / "pg_waldump"
    if not waldump.exists() and (found := shutil.which("pg_waldump")) is not None:
        waldump = Path(found)
    if not waldump.exists():
        return "pg_waldump is not installed"
    if end <= start:
        return 0
    done = subprocess.run(
        [
            *(str(waldump), "-p", str(Path(data_dir) / "pg_wal"), "-t", str(timeline)),
            *("-s", _lsn(start), "-e", _lsn(end)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"pg_waldump failed: {lines[-1] if lines else done.returncode}"
    return database_bytes(done.stdout.splitlines(), oid)


def database_bytes(lines: Iterable[str], oid: int) -> int:
    """The total length of pg_waldump's records (its output's ``lines``) that touch a relation
    of database ``oid`` or belong to a transaction that did."""
    records: list[tuple[int, int, bool]] = []  # total length, xid, touches the database
    ours_xids: set[int] = set()
    for line in lines:
        if (record := _RECORD.search(line)) is None:
            continue
        total, xid = int(record[1]), int(record[2])
        ours = any(int(db) == oid for db in _RELATION.findall(line))
        if ours and xid:
            ours_xids.add(xid)
        records.append((total, xid, ours))
    return sum(total for total, xid, ours in records if ours or (xid and xid in ours_xids))
