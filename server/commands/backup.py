"""python -m server backup --to DIR: one logical backup (pg_dump, custom format) with its
manifest, recorded in the database for the backup metric, then retention. The dump's path is
the last line printed; on failure nothing but a partial file under a hidden name is left."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from pathlib import Path

import asyncpg
from structlog.typing import FilteringBoundLogger

from server.backup import pgtools
from server.backup.libpq import Target
from server.backup.manifest import Manifest, dump_name, sha256_of, write_manifest
from server.backup.repository import BackupRecord, BackupRepository
from server.backup.retention import prune
from server.db.sqlfiles import load_queries
from server.runtime.logs import flush_logs
from server.runtime.settings import Settings


async def backup_command(
    settings: Settings,
    logger: FilteringBoundLogger,
    *,
    to: Path,
    keep: int | None,
    max_age: dt.timedelta | None,
    bin_dir: Path | None,
) -> int:
    # The direct address: an exported snapshot lives in one session, which a transaction
    # pooler would not keep (the same reason migrations use it).
    target = Target.from_url(settings.migration_url)
    repo = BackupRepository(load_queries())
    await asyncio.to_thread(to.mkdir, mode=0o700, parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    logger.info("backup_started", database=target.database, to=str(to))
    try:
        manifest, dump = await _dump(target, repo, to, started, bin_dir)
    except (pgtools.ToolFailed, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logger.error("backup_failed", database=target.database, error=str(exc))
        flush_logs()
        return 1
    logger.info(
        "backup_written",
        file=str(dump),
        size_bytes=manifest.size_bytes,
        sha256=manifest.sha256,
        schema_version=manifest.schema_version,
        seconds=round((manifest.finished_at - started).total_seconds(), 3),
    )
    status = await _record(target, repo, manifest, logger)
    removed = prune(to, keep=keep, max_age=max_age, now=dt.datetime.now(dt.UTC))
    if removed:
        logger.info("backups_removed", files=[path.name for path in removed])
    flush_logs()
    print(dump, flush=True)
    return status


async def _dump(
    target: Target, repo: BackupRepository, to: Path, started: dt.datetime, bin_dir: Path | None
) -> tuple[Manifest, Path]:
    dump_version = await pgtools.version("pg_dump", bin_dir)
    conn = await target.connect()
    try:
        # Facts and dump from one snapshot: the manifest's counts are the dump's exactly.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot, snapshot_at = await repo.export_snapshot(conn)
            counts = await repo.row_counts(conn)
            trail = await repo.audit_trail(conn)
            migrations = await repo.applied_migrations(conn)
            dump = to / dump_name(target.database, snapshot_at)
            partial = to / f".{dump.name}.partial"
            try:
                await pgtools.dump(target, partial, snapshot=snapshot, bin_dir=bin_dir)
                partial.chmod(0o600)
                os.link(partial, dump)  # never over an existing backup
            finally:
                partial.unlink(missing_ok=True)
        server_version = conn.get_settings().server_version
    finally:
        await conn.close()
    manifest = Manifest(
        file=dump.name,
        size_bytes=dump.stat().st_size,
        sha256=sha256_of(dump),
        database=target.database,
        server_version=server_version,
        pg_dump_version=dump_version,
        migrations=migrations,
        row_counts=counts,
        audit=trail,
        started_at=started,
        snapshot_at=snapshot_at,
        finished_at=dt.datetime.now(dt.UTC),
    )
    try:
        write_manifest(dump, manifest)
    except OSError:
        with contextlib.suppress(OSError):
            dump.unlink()
        raise
    return manifest, dump


async def _record(
    target: Target, repo: BackupRepository, manifest: Manifest, logger: FilteringBoundLogger
) -> int:
    """The row the metric reads. A backup that cannot be recorded is still a good file, but
    the run fails: left unnoticed, the alert on the metric would be the first sign."""
    try:
        conn = await target.connect()
        try:
            await repo.record(
                conn,
                BackupRecord(
                    manifest.file,
                    manifest.size_bytes,
                    manifest.sha256,
                    manifest.schema_version,
                    manifest.snapshot_at,
                ),
            )
        finally:
            await conn.close()
    except Exception as exc:
        logger.error("backup_not_recorded", file=manifest.file, error=type(exc).__name__)
        return 1
    return 0
