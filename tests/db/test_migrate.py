import asyncio
import atexit
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from server.db.migrate import (
    LOCK_KEY,
    MigrationChecksumMismatch,
    MigrationError,
    MigrationLockTimeout,
    MigrationMissing,
    load_migrations,
    migrate,
    status,
)

# The same variable as tests/conftest.py, so one override points the whole suite elsewhere.
ADMIN_URL = os.environ.get(
    "HOTPATH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROJECT_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def _base_set() -> Path:
    """The runner is tested on the project's first two files: a transactional baseline and a
    no-transaction index. Later migrations would only change the counts these tests assert."""
    directory = Path(tempfile.mkdtemp(prefix="hotpath-migrations-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for name in ("0001_baseline.sql", "0002_users_email_prefix_index.sql"):
        shutil.copy(PROJECT_MIGRATIONS / name, directory / name)
    return directory


MIGRATIONS = _base_set()


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    name = f"hotpath_mig_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(MIGRATIONS, tmp_path / "migrations"))


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def applied_rows(dsn: str) -> list[tuple[int, str, str]]:
    rows = await fetch(dsn, "SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    return [(row["version"], row["name"], row["checksum"]) for row in rows]


async def exists(dsn: str, relation: str) -> bool:
    rows = await fetch(dsn, "SELECT to_regclass($1) IS NOT NULL AS found", relation)
    return bool(rows[0]["found"])


async def test_applies_all_migrations_on_an_empty_database(dsn: str) -> None:
    expected = load_migrations(MIGRATIONS)
    assert [m.version for m in expected] == [1, 2]

    applied = await migrate(dsn, MIGRATIONS)

    assert applied == expected
    assert await applied_rows(dsn) == [(m.version, m.name, m.checksum) for m in expected]
    durations = await fetch(dsn, "SELECT duration_ms FROM schema_migrations")
    assert all(row["duration_ms"] >= 0 for row in durations)


async def test_baseline_users_table(dsn: str) -> None:
    await migrate(dsn, MIGRATIONS)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        insert = "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING *"
        user = await conn.fetchrow(insert, "Ann@Example.COM")
        assert user is not None
        assert user["email_normalized"] == "ann@example.com"
        assert (user["status"], user["roles"], user["display_name"]) == ("active", [], "")
        with pytest.raises(asyncpg.UniqueViolationError) as caught:
            await conn.execute(insert, "ann@example.com")
        assert caught.value.constraint_name == "users_email_normalized_key"
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO users (email, password_hash, status) VALUES ('b', 'x', 'gone')"
            )
        assert await conn.fetchval("SELECT to_regclass('users_created_at_id_idx') IS NOT NULL")
    finally:
        await conn.close()


async def test_second_run_applies_nothing(dsn: str) -> None:
    await migrate(dsn, MIGRATIONS)
    before = await applied_rows(dsn)
    messages: list[str] = []

    assert await migrate(dsn, MIGRATIONS, log=messages.append) == []

    assert await applied_rows(dsn) == before
    assert messages == ["schema is up to date"]


async def test_no_transaction_migration_builds_a_valid_index(dsn: str) -> None:
    assert [m.transactional for m in load_migrations(MIGRATIONS)] == [True, False]

    await migrate(dsn, MIGRATIONS)

    rows = await fetch(
        dsn,
        "SELECT i.indisvalid, i.indisready, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i"
        " WHERE i.indexrelid = 'users_email_normalized_prefix_idx'::regclass",
    )
    assert len(rows) == 1
    assert rows[0]["indisvalid"]
    assert rows[0]["indisready"]
    assert "text_pattern_ops" in rows[0]["def"]


async def test_no_transaction_file_is_split_on_statement_lines(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (a int, b int);\n")
    (tmp_path / "0002_two_indexes.sql").write_text(
        "-- migrate: no-transaction\n"
        "CREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n"
        "-- migrate: statement\n"
        "CREATE INDEX CONCURRENTLY t_b_idx ON t (b);\n"
        "-- migrate: statement\n"
        "-- only a comment\n"
    )
    await migrate(dsn, tmp_path)
    assert await exists(dsn, "t_a_idx")
    assert await exists(dsn, "t_b_idx")


async def test_edited_applied_file_raises_checksum_error(dsn: str, migrations_copy: Path) -> None:
    await migrate(dsn, migrations_copy)
    baseline = migrations_copy / "0001_baseline.sql"
    baseline.write_text(baseline.read_text() + "-- an innocent-looking edit\n")
    (migrations_copy / "0003_widgets.sql").write_text("CREATE TABLE widgets (id int);\n")

    with pytest.raises(MigrationChecksumMismatch, match=r"0001_baseline\.sql") as caught:
        await migrate(dsn, migrations_copy)

    assert caught.value.names == ["0001_baseline.sql"]
    assert not await exists(dsn, "widgets")


async def test_applied_version_missing_from_disk_is_an_error(
    dsn: str, migrations_copy: Path
) -> None:
    await migrate(dsn, migrations_copy)
    (migrations_copy / "0002_users_email_prefix_index.sql").unlink()

    with pytest.raises(MigrationMissing, match=r"0002_users_email_prefix_index\.sql") as caught:
        await migrate(dsn, migrations_copy)
    assert caught.value.versions == [2]


async def test_failing_transactional_migration_leaves_nothing(
    dsn: str, migrations_copy: Path
) -> None:
    bad = migrations_copy / "0003_widgets.sql"
    bad.write_text(
        "CREATE TABLE widgets (id int);\nINSERT INTO widgets VALUES (1);\nSELECT 1 / 0;\n"
    )

    with pytest.raises(MigrationError, match=r"0003_widgets\.sql.*division by zero"):
        await migrate(dsn, migrations_copy)

    assert not await exists(dsn, "widgets")
    assert [row[0] for row in await applied_rows(dsn)] == [1, 2]

    bad.write_text("CREATE TABLE widgets (id int);\n")
    assert [m.version for m in await migrate(dsn, migrations_copy, lock_timeout=1)] == [3]
    assert await exists(dsn, "widgets")


async def test_pending_version_below_an_applied_one_is_refused(
    dsn: str, migrations_copy: Path
) -> None:
    (migrations_copy / "0005_late.sql").write_text("SELECT 1;\n")
    await migrate(dsn, migrations_copy)
    (migrations_copy / "0004_from_an_old_branch.sql").write_text("CREATE TABLE old (id int);\n")

    with pytest.raises(MigrationError, match=r"0004_from_an_old_branch\.sql"):
        await migrate(dsn, migrations_copy)
    assert not await exists(dsn, "old")


@pytest.mark.parametrize(
    "name",
    ["1_short.sql", "00001_long.sql", "0001-dash.sql", "0001_.sql", "0001_Upper.sql", "abcd_x.sql"],
)
def test_load_rejects_badly_named_files(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=name.replace(".", r"\.")):
        load_migrations(tmp_path)


def test_load_rejects_duplicate_versions(tmp_path: Path) -> None:
    (tmp_path / "0001_one.sql").write_text("SELECT 1;\n")
    (tmp_path / "0001_other.sql").write_text("SELECT 2;\n")
    with pytest.raises(MigrationError, match="version 1"):
        load_migrations(tmp_path)


def test_load_ignores_other_files_and_sorts(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("notes\n")
    (tmp_path / "0010_b.sql").write_bytes(b"SELECT 10;\n")
    (tmp_path / "0002_a.sql").write_bytes(b"SELECT 2;\n")

    loaded = load_migrations(tmp_path)

    assert [(m.version, m.name) for m in loaded] == [(2, "0002_a.sql"), (10, "0010_b.sql")]
    assert loaded[0].checksum == hashlib.sha256(b"SELECT 2;\n").hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        "-- migrate: no-transactions\nSELECT 1;\n",
        "SELECT 1;\n-- migrate: no-transaction\n",
        "SELECT 1;\n-- migrate: statement\nSELECT 2;\n",
    ],
)
def test_load_rejects_unknown_or_misplaced_directives(tmp_path: Path, text: str) -> None:
    (tmp_path / "0001_x.sql").write_text(text)
    with pytest.raises(MigrationError, match=r"0001_x\.sql"):
        load_migrations(tmp_path)


def test_load_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError):
        load_migrations(tmp_path / "nope")


async def test_three_concurrent_runners_apply_each_migration_once(
    dsn: str, migrations_copy: Path
) -> None:
    (migrations_copy / "0003_slow.sql").write_text("SELECT pg_sleep(0.5);\n")
    (migrations_copy / "0004_users_updated_at_index.sql").write_text(
        "-- migrate: no-transaction\n"
        "CREATE INDEX CONCURRENTLY users_updated_at_idx ON users (updated_at);\n"
    )
    expected = load_migrations(migrations_copy)
    logs: list[list[str]] = [[], [], []]
    started = time.monotonic()

    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                migrate(dsn, migrations_copy, lock_timeout=30, poll_interval=0.02, log=log.append)
                for log in logs
            )
        ),
        timeout=60,
    )

    assert time.monotonic() - started < 30
    assert sorted(m.version for result in results for m in result) == [1, 2, 3, 4]
    assert sorted(results, key=len) == [[], [], expected]
    assert any("waiting for the migration lock" in line for log in logs for line in log)
    assert await applied_rows(dsn) == [(m.version, m.name, m.checksum) for m in expected]
    invalid = await fetch(dsn, "SELECT indexrelid FROM pg_index WHERE NOT indisvalid")
    assert invalid == []


async def test_lock_timeout_when_another_session_holds_the_lock(dsn: str) -> None:
    holder = await asyncpg.connect(dsn, timeout=10)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        started = time.monotonic()

        with pytest.raises(MigrationLockTimeout):
            await migrate(dsn, MIGRATIONS, lock_timeout=0.3, poll_interval=0.05)

        assert 0.3 <= time.monotonic() - started < 5
        assert not await exists(dsn, "schema_migrations")
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert len(await migrate(dsn, MIGRATIONS, lock_timeout=1)) == 2
    finally:
        await holder.close()


async def test_lock_is_released_after_a_run(dsn: str) -> None:
    await migrate(dsn, MIGRATIONS)
    rows = await fetch(dsn, "SELECT pg_try_advisory_lock($1) AS got", LOCK_KEY)
    assert rows[0]["got"]


async def test_status_of_empty_partial_current_and_mismatched_databases(
    dsn: str, tmp_path: Path, migrations_copy: Path
) -> None:
    everything = load_migrations(migrations_copy)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        empty = await status(conn, migrations_copy)
        assert (empty.applied, empty.pending, empty.current) == ([], everything, False)
        assert (empty.mismatched, empty.unknown) == ([], [])

        first_only = tmp_path / "first_only"
        first_only.mkdir()
        shutil.copy(migrations_copy / "0001_baseline.sql", first_only)
        await migrate(dsn, first_only)
        partial = await status(conn, migrations_copy)
        assert (partial.applied, partial.pending, partial.current) == ([1], everything[1:], False)

        await migrate(dsn, migrations_copy)
        current = await status(conn, migrations_copy)
        assert (current.applied, current.pending, current.current) == ([1, 2], [], True)
        assert (current.mismatched, current.unknown) == ([], [])

        # A newer release migrated further: this one stays ready.
        behind = await status(conn, first_only)
        assert (behind.unknown, behind.pending, behind.current) == ([2], [], True)

        baseline = migrations_copy / "0001_baseline.sql"
        baseline.write_text(baseline.read_text() + "-- edited\n")
        mismatched = await status(conn, migrations_copy)
        assert (mismatched.mismatched, mismatched.current) == (["0001_baseline.sql"], False)
    finally:
        await conn.close()


async def test_cancelled_runner_leaves_nothing_locked_or_half_applied(
    dsn: str, migrations_copy: Path
) -> None:
    (migrations_copy / "0003_slow.sql").write_text(
        "CREATE TABLE widgets (id int);\nSELECT pg_sleep(30);\n"
    )
    reached = asyncio.Event()

    def log(message: str) -> None:
        if message == "applying 0003_slow.sql":
            reached.set()

    runner = asyncio.create_task(migrate(dsn, migrations_copy, log=log))
    await asyncio.wait_for(reached.wait(), timeout=10)
    await asyncio.sleep(0.3)  # let pg_sleep start on the server
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner

    (migrations_copy / "0003_slow.sql").write_text("-- comments only\n")
    assert [m.version for m in await migrate(dsn, migrations_copy, lock_timeout=2)] == [3]
    assert not await exists(dsn, "widgets")
