"""Forward-only, checksummed SQL migrations.

Files are named ``NNNN_description.sql`` (four digits, lower-case snake-case description) and
applied in version order, each exactly once. The sha256 of every applied file is recorded in
``schema_migrations``; editing an applied file, or deleting one, is an error. A pending file
numbered below an applied one is refused rather than run out of order: renumber it.

By default a file runs as one simple query inside a transaction together with its
``schema_migrations`` row, so a failure leaves nothing behind.

A file whose leading comment lines include ``-- migrate: no-transaction`` runs in autocommit, as
``CREATE INDEX CONCURRENTLY`` requires. PostgreSQL wraps a multi-statement simple query in an
implicit transaction, so such a file is split on lines reading ``-- migrate: statement`` and each
part is sent alone: put exactly one statement in each part. Parts that ran stay applied when a
later part fails, and the whole file runs again next time, so every part must be rerunnable. A
failed concurrent build leaves an INVALID index that ``IF NOT EXISTS`` would keep on the rerun:
put ``DROP INDEX CONCURRENTLY IF EXISTS`` in a part before the create.

Runners serialize on a session-level advisory lock polled with ``pg_try_advisory_lock``. A session
blocked in ``pg_advisory_lock`` holds a snapshot that the lock holder's ``CREATE INDEX
CONCURRENTLY`` waits for: a deadlock. Session locks need a direct connection or PgBouncer in
session mode, never transaction pooling.
"""

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from server.db.connection import Connection

# sha256(b"hotpath:migrate")[:8] as a signed bigint; advisory locks are scoped to one database.
LOCK_KEY = -1401750177069428783
CONNECT_TIMEOUT = 10.0
# For the runner's own bookkeeping queries; migrations themselves run without a timeout.
QUERY_TIMEOUT = 10.0

_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9][a-z0-9_]*)\.sql")
_DIRECTIVE = re.compile(r"^--[ \t]*migrate:[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)
_SEPARATOR = re.compile(r"^--[ \t]*migrate:[ \t]*statement[ \t]*\r?$", re.MULTILINE)
# The start of the first line that is neither blank nor a comment: directives above it are header.
_FIRST_CODE_LINE = re.compile(r"^(?![ \t]*(?:--|\r?$))", re.MULTILINE)

_CREATE_TABLE = """\
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
)"""
_SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
_INSERT_APPLIED = (
    "INSERT INTO schema_migrations (version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4)"
)


class MigrationError(Exception):
    """A migration could not be loaded, verified or applied."""


class MigrationChecksumMismatch(MigrationError):
    """Applied migration files were edited afterwards."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"applied migration edited since it ran: {', '.join(names)}")
        self.names = names


class MigrationMissing(MigrationError):
    """Versions recorded as applied have no file on disk."""

    def __init__(self, applied: list[tuple[int, str]]) -> None:
        listed = ", ".join(f"{name} (version {version})" for version, name in applied)
        super().__init__(f"applied migration missing from disk: {listed}")
        self.versions = [version for version, _ in applied]


class MigrationLockTimeout(MigrationError):
    """Another runner held the migration lock for longer than ``lock_timeout``."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # the file name, e.g. "0001_baseline.sql"
    sql: str
    checksum: str
    transactional: bool


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """What the database has applied compared with the files on disk.

    ``unknown`` lists applied versions without a file: a newer release migrated while this one
    still runs. They do not make ``current`` false, so a rolling deploy keeps old replicas ready.
    """

    applied: list[int]
    pending: list[Migration]
    mismatched: list[str]
    unknown: list[int]
    current: bool


def load_migrations(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        version = int(match[1])
        if version in by_version:
            raise MigrationError(
                f"{path.name}: version {version} is also {by_version[version].name}"
            )
        by_version[version] = _parse(path.name, version, path.read_bytes())
    return [by_version[version] for version in sorted(by_version)]


def _parse(name: str, version: int, data: bytes) -> Migration:
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{name}: not valid UTF-8") from exc
    code = _FIRST_CODE_LINE.search(sql)
    header_end = code.start() if code else len(sql)
    transactional = True
    for directive in _DIRECTIVE.finditer(sql):
        if directive[1] == "no-transaction" and directive.start() < header_end:
            transactional = False
        elif directive[1] != "statement":
            raise MigrationError(f"{name}: misplaced or unknown directive {directive[0].strip()!r}")
    if transactional and _SEPARATOR.search(sql):
        raise MigrationError(f"{name}: '-- migrate: statement' needs '-- migrate: no-transaction'")
    checksum = hashlib.sha256(data).hexdigest()
    return Migration(version, name, sql, checksum, transactional)


def _statements(migration: Migration) -> list[str]:
    # Only comments would be an empty query, on which asyncpg 0.32 fails with AttributeError.
    parts = [migration.sql] if migration.transactional else _SEPARATOR.split(migration.sql)
    return [
        p for p in parts if any(ln.strip() and ln.lstrip()[:2] != "--" for ln in p.splitlines())
    ]


def _compare(
    migrations: list[Migration], applied: Iterable[asyncpg.Record]
) -> tuple[list[Migration], list[str], list[tuple[int, str]]]:
    on_disk = {migration.version: migration for migration in migrations}
    done: set[int] = set()
    mismatched: list[str] = []
    unknown: list[tuple[int, str]] = []
    for row in applied:
        done.add(row["version"])
        migration = on_disk.get(row["version"])
        if migration is None:
            unknown.append((row["version"], row["name"]))
        elif migration.checksum != row["checksum"]:
            mismatched.append(migration.name)
    pending = [migration for migration in migrations if migration.version not in done]
    return pending, mismatched, unknown


async def migrate(
    dsn: str,
    directory: Path,
    *,
    lock_timeout: float = 60.0,
    poll_interval: float = 0.1,
    log: Callable[[str], None] | None = None,
) -> list[Migration]:
    """Apply every pending migration under the migration lock; return those applied."""
    if lock_timeout < 0 or poll_interval <= 0:
        raise ValueError("lock_timeout must be >= 0 and poll_interval > 0")
    say = log or (lambda _message: None)
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(
        dsn,
        timeout=CONNECT_TIMEOUT,
        command_timeout=None,
        server_settings={"application_name": "hotpath-migrate"},
    )
    locked = False
    try:
        await _lock(conn, lock_timeout, poll_interval, say)
        locked = True
        await conn.execute(_CREATE_TABLE, timeout=QUERY_TIMEOUT)
        applied = await conn.fetch(_SELECT_APPLIED, timeout=QUERY_TIMEOUT)
        pending, mismatched, unknown = _compare(migrations, applied)
        if unknown:
            raise MigrationMissing(unknown)
        if mismatched:
            raise MigrationChecksumMismatch(mismatched)
        newest = max((row["version"] for row in applied), default=0)
        if pending and pending[0].version < newest:
            raise MigrationError(f"{pending[0].name} is older than applied version {newest}")
        for migration in pending:
            await _apply(conn, migration, say)
        if not pending:
            say("schema is up to date")
        return pending
    finally:
        await _release(conn, locked)


async def _lock(
    conn: asyncpg.Connection, patience: float, interval: float, say: Callable[[str], None]
) -> None:
    deadline = time.monotonic() + patience
    waiting = False
    while not await conn.fetchval(
        "SELECT pg_try_advisory_lock($1)", LOCK_KEY, timeout=QUERY_TIMEOUT
    ):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MigrationLockTimeout(f"migration lock still held by another after {patience:g}s")
        if not waiting:
            say("waiting for the migration lock held by another runner")
            waiting = True
        await asyncio.sleep(min(interval, remaining))


async def _apply(
    conn: asyncpg.Connection, migration: Migration, say: Callable[[str], None]
) -> None:
    say(f"applying {migration.name}")
    started = time.perf_counter()
    transaction = conn.transaction() if migration.transactional else contextlib.nullcontext()
    try:
        async with transaction:
            for statement in _statements(migration):
                await conn.execute(statement)
            duration_ms = round((time.perf_counter() - started) * 1000)
            row = (migration.version, migration.name, migration.checksum, duration_ms)
            await conn.execute(_INSERT_APPLIED, *row, timeout=QUERY_TIMEOUT)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.name} failed: {type(exc).__name__}: {exc}") from exc
    say(f"applied {migration.name} in {duration_ms} ms")


async def _release(conn: asyncpg.Connection, locked: bool) -> None:
    try:
        if locked and not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY, timeout=QUERY_TIMEOUT)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        conn.terminate()  # ending the session releases its advisory locks as well
    finally:
        await conn.close(timeout=QUERY_TIMEOUT)


async def status(conn: Connection, directory: Path) -> MigrationStatus:
    """Compare the database with ``directory`` in one query; call it outside a transaction."""
    migrations = await asyncio.to_thread(load_migrations, directory)
    try:
        applied = await conn.fetch(_SELECT_APPLIED)
    except asyncpg.UndefinedTableError:
        applied = []
    pending, mismatched, unknown = _compare(migrations, applied)
    return MigrationStatus(
        applied=[row["version"] for row in applied],
        pending=pending,
        mismatched=mismatched,
        unknown=[version for version, _ in unknown],
        current=not pending and not mismatched,
    )
