"""The named queries of sql/backups.sql: what a backup records about its snapshot, what a
restore checks, and the record of each backup made."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import asyncpg

from server.db.connection import Connection
from server.db.sqlfiles import Queries

CURSOR_PREFETCH = 1000


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The append-only audit trail summed up: a digest over every row in id order, so a copy
    that lost, gained or changed any event has another digest."""

    events: int
    last_id: int
    digest: str


@dataclass(frozen=True, slots=True)
class BackupRecord:
    file_name: str
    size_bytes: int
    sha256: str
    schema_version: int
    snapshot_at: dt.datetime


class BackupRepository:
    def __init__(self, queries: Queries) -> None:
        self._snapshot = queries.sql("get_exported_snapshot")
        self._now = queries.sql("get_snapshot_time")
        self._counts = queries.sql("list_table_row_counts")
        self._audit_rows = queries.sql("list_audit_rows_for_digest")
        self._audit_guards = queries.sql("count_audit_guards")
        self._consistency = queries.sql("get_consistency_problems")
        self._migrations = queries.sql("list_applied_migrations")
        self._has_relations = queries.sql("exists_user_relation")
        self._record = queries.sql("create_backup_record")
        self._latest = queries.sql("get_latest_backup_time")

    async def export_snapshot(self, conn: Connection) -> tuple[str, dt.datetime]:
        """The open repeatable-read transaction's snapshot id and its time."""
        snapshot: str = await conn.fetchval(self._snapshot)
        at: dt.datetime = await conn.fetchval(self._now)
        return snapshot, at

    async def row_counts(self, conn: Connection) -> dict[str, int]:
        return {r["table_name"]: r["row_count"] for r in await conn.fetch(self._counts)}

    async def audit_trail(self, conn: asyncpg.Connection) -> AuditTrail:
        """Read through a cursor, so a long trail is hashed without holding it all; call it in
        a transaction (a cursor needs one) on a connection from ``Target.connect``."""
        digest = hashlib.sha256()
        events = last_id = 0
        async for row in conn.cursor(self._audit_rows, prefetch=CURSOR_PREFETCH):
            digest.update(row["line"].encode())
            digest.update(b"\n")
            events += 1
            last_id = row["id"]
        return AuditTrail(events, last_id, digest.hexdigest())

    async def audit_guards(self, conn: Connection) -> int:
        count: int = await conn.fetchval(self._audit_guards)
        return count

    async def consistency_problems(self, conn: Connection) -> dict[str, int]:
        """Each kind of inconsistency with how many rows show it; empty when there is none."""
        row = await conn.fetchrow(self._consistency)
        assert row is not None
        return {name: count for name, count in row.items() if count}

    async def applied_migrations(self, conn: Connection) -> list[AppliedMigration]:
        return [
            AppliedMigration(r["version"], r["name"], r["checksum"])
            for r in await conn.fetch(self._migrations)
        ]

    async def has_relations(self, conn: Connection) -> bool:
        found: bool = await conn.fetchval(self._has_relations)
        return found

    async def record(self, conn: Connection, backup: BackupRecord) -> None:
        await conn.execute(
            self._record,
            "logical",
            backup.file_name,
            backup.size_bytes,
            backup.sha256,
            backup.schema_version,
            backup.snapshot_at,
        )

    async def latest_finished_at(self, conn: Connection) -> dt.datetime | None:
        latest: dt.datetime | None = await conn.fetchval(self._latest)
        return latest
