"""python -m server restore FILE --into URL [--verify] [--clean]: a logical backup back into
a database (created when missing), refused when the target already holds anything unless
--clean says to replace what the backup holds. With --verify the backup is first restored into
a scratch database on the same server and checked (server/backup/verify.py); the target is
touched only if that copy is sound, and is checked the same way afterwards."""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncpg
from structlog.typing import FilteringBoundLogger

from server.backup import pgtools, verify
from server.backup.libpq import Target, quote_identifier
from server.backup.manifest import Manifest, ManifestError, read_checked
from server.backup.repository import BackupRepository
from server.db.devdb import create_database_if_missing
from server.db.sqlfiles import load_queries
from server.runtime.logs import flush_logs
from server.runtime.paths import MIGRATIONS_DIR

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1


class RestoreRefused(Exception):
    """The restore did not start, or its copy failed a check; the message says why."""


async def restore_command(
    logger: FilteringBoundLogger,
    *,
    dump: Path,
    into: str,
    check: bool,
    clean: bool,
    bin_dir: Path | None,
    migrations_dir: Path = MIGRATIONS_DIR,
) -> int:
    target = Target.from_url(into)
    repo = BackupRepository(load_queries())
    try:
        manifest = read_checked(dump)
        await create_database_if_missing(into, timeout=10.0)
        if not clean and await _holds_anything(target, repo):
            raise RestoreRefused(
                f"{target.database} is not empty: restore into a new database, or pass --clean "
                "to replace the objects the backup holds"
            )
        if check:
            await _restore_checked_copy(target, repo, dump, manifest, bin_dir, migrations_dir)
            logger.info("restore_verified_copy", file=dump.name, database=target.database)
        await pgtools.restore(target, dump, clean=clean, bin_dir=bin_dir)
        if check:
            await _check(target, repo, manifest, migrations_dir)
    except (
        ManifestError,
        RestoreRefused,
        pgtools.ToolFailed,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        logger.error("restore_failed", file=dump.name, database=target.database, error=str(exc))
        flush_logs()
        raise SystemExit(f"restore failed: {exc}") from None
    logger.info(
        "restored",
        file=dump.name,
        database=target.database,
        schema_version=manifest.schema_version,
        snapshot_at=manifest.snapshot_at.isoformat(),
        rows=sum(manifest.row_counts.values()),
        verified=check,
    )
    flush_logs()
    print(target.url, flush=True)
    return 0


async def _holds_anything(target: Target, repo: BackupRepository) -> bool:
    conn = await target.connect()
    try:
        return await repo.has_relations(conn)
    finally:
        await conn.close()


async def _restore_checked_copy(
    target: Target,
    repo: BackupRepository,
    dump: Path,
    manifest: Manifest,
    bin_dir: Path | None,
    migrations_dir: Path,
) -> None:
    """Restore into a scratch database beside the target, check it, drop it."""
    suffix = f"_verify_{secrets.token_hex(4)}"
    scratch = target.with_database(target.database[: MAX_IDENTIFIER - len(suffix)] + suffix)
    admin = await target.with_database("postgres").connect()
    try:
        await admin.execute(f"CREATE DATABASE {quote_identifier(scratch.database)}")
        try:
            await pgtools.restore(scratch, dump, clean=False, bin_dir=bin_dir)
            await _check(scratch, repo, manifest, migrations_dir)
        finally:
            await admin.execute(
                f"DROP DATABASE IF EXISTS {quote_identifier(scratch.database)} WITH (FORCE)"
            )
    finally:
        await admin.close()


async def _check(
    target: Target, repo: BackupRepository, manifest: Manifest, migrations_dir: Path
) -> None:
    conn = await target.connect()
    try:
        found = await verify.problems(conn, repo, manifest, migrations_dir)
    finally:
        await conn.close()
    if found:
        raise RestoreRefused(f"{target.database} fails its checks: " + "; ".join(found))
