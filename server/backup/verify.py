"""What a restored copy must show before anyone relies on it: the manifest's row counts, the
migrations it was made with (and their files unchanged on disk), the audit trail whole and
still append-only, and no order, item or stock level a sound hotpath cannot hold."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from server.backup.manifest import Manifest
from server.backup.repository import BackupRepository
from server.db.migrate import load_migrations

AUDIT_GUARDS = 2  # the update/delete and the truncate trigger of migration 0003


async def problems(
    conn: asyncpg.Connection, repo: BackupRepository, manifest: Manifest, migrations_dir: Path
) -> list[str]:
    """Everything wrong with the database ``conn`` is on, compared with ``manifest``; empty
    when the copy is sound."""
    found: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counts = await repo.row_counts(conn)
        for table, expected in sorted(manifest.row_counts.items()):
            actual = counts.get(table)
            if actual != expected:
                found.append(f"table {table}: {actual} rows, the backup had {expected}")
        applied = await repo.applied_migrations(conn)
        if applied != manifest.migrations:
            found.append(
                "schema_migrations differs from the manifest: "
                f"{[m.name for m in applied]} against {[m.name for m in manifest.migrations]}"
            )
        on_disk = {m.version: m for m in load_migrations(migrations_dir)}
        for migration in applied:
            file = on_disk.get(migration.version)
            if file is None:
                found.append(f"migration {migration.name} is not among this release's files")
            elif file.checksum != migration.checksum:
                found.append(f"migration {migration.name}: checksum differs from {file.name}")
        trail = await repo.audit_trail(conn)
        if trail != manifest.audit:
            found.append(
                f"audit trail: {trail.events} events up to id {trail.last_id} (digest "
                f"{trail.digest[:12]}), the backup had {manifest.audit.events} up to id "
                f"{manifest.audit.last_id} (digest {manifest.audit.digest[:12]})"
            )
        guards = await repo.audit_guards(conn)
        if guards != AUDIT_GUARDS:
            found.append(f"audit trail: {guards} of its {AUDIT_GUARDS} append-only triggers")
        for kind, count in sorted((await repo.consistency_problems(conn)).items()):
            found.append(f"consistency: {count} {kind.replace('_', ' ')}")
    return found
