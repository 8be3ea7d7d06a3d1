"""Migration 0009 on a database with addresses stored before hotpath normalised them, then the
rewrite python -m server migrate does for those SQL could not normalise."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import asyncpg
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from server.commands.tasks import normalize_stored_emails
from server.db.migrate import MigrationError, migrate
from server.db.sqlfiles import load_queries
from server.runtime.logs import flush_logs
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from server.users.email_address import normalize_email
from server.users.repository import UsersRepository

VERSION = 9
INSERT = """INSERT INTO users (email, password_hash, status, email_verified_at)
VALUES ($1, 'x', 'active', CASE WHEN $2 THEN now() END) RETURNING id"""


@pytest.fixture
def before(tmp_path: Path) -> Path:
    """The project's migrations up to the one under test."""
    directory = tmp_path / "before"
    directory.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) < VERSION:
            shutil.copy(path, directory / path.name)
    return directory


async def legacy(dsn: str, rows: list[tuple[str, bool]]) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {email: await conn.fetchval(INSERT, email, verified) for email, verified in rows}
    finally:
        await conn.close()


async def stored(dsn: str) -> dict[int, tuple[str, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch("SELECT id, email, email_normalized, status FROM users")
    finally:
        await conn.close()
    return {r["id"]: (r["email"], r["email_normalized"], r["status"]) for r in found}


async def test_existing_addresses_are_rekeyed_and_rewritten(
    empty_db: str,
    before: Path,
    settings: Settings,
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
) -> None:
    await migrate(empty_db, before)
    ids = await legacy(
        empty_db,
        [
            ("Ada.Lovelace@Example.COM", True),
            ("BOB@EXAMPLE.ORG", False),
            ("\u212aim@example.com", False),  # made with a Kelvin sign, never confirmed
            ("\uff23arl@example.com", True),  # full-width C, confirmed: stays active
            ("Ann@B\u00fccher.de", False),  # an IDN: Python's turn
            ("cy@b\u00fccher.de", False),  # its IDNA form below is another account already
            ("cy@xn--bcher-kva.de", False),
            ("jos\u00e9@example.com", True),  # a local part hotpath no longer accepts
        ],
    )
    await migrate(empty_db, MIGRATIONS_DIR)
    after_sql = await stored(empty_db)
    assert after_sql[ids["Ada.Lovelace@Example.COM"]] == (
        "ada.lovelace@example.com",
        "ada.lovelace@example.com",
        "active",
    )
    assert after_sql[ids["BOB@EXAMPLE.ORG"]] == ("bob@example.org", "bob@example.org", "active")
    kim = ("kim@example.com", "kim@example.com", "pending")
    assert after_sql[ids["\u212aim@example.com"]] == kim
    carl = ("carl@example.com", "carl@example.com", "active")
    assert after_sql[ids["\uff23arl@example.com"]] == carl
    ann = ("Ann@B\u00fccher.de", "ann@b\u00fccher.de", "active")
    assert after_sql[ids["Ann@B\u00fccher.de"]] == ann

    one_runner = dataclasses.replace(settings, database_url=empty_db)
    assert await normalize_stored_emails(one_runner, logger) == 1
    assert await normalize_stored_emails(one_runner, logger) == 0  # a second runner: no-op
    final = await stored(empty_db)
    ann = ("ann@xn--bcher-kva.de", "ann@xn--bcher-kva.de", "active")
    assert final[ids["Ann@B\u00fccher.de"]] == ann
    # Left as they were, and reported by id (never by address) on every run.
    assert final[ids["cy@b\u00fccher.de"]] == after_sql[ids["cy@b\u00fccher.de"]]
    assert final[ids["jos\u00e9@example.com"]] == after_sql[ids["jos\u00e9@example.com"]]
    flush_logs()
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    reported = [line for line in lines if line["message"] == "email_not_normalized"]
    assert sorted({line["user_id"] for line in reported}) == sorted(
        [ids["cy@b\u00fccher.de"], ids["jos\u00e9@example.com"]]
    )
    assert not any("b\u00fccher" in str(line) or "jos" in str(line) for line in reported)

    # Every spelling of an address finds its account, and none can be registered again.
    users = UsersRepository(load_queries())
    conn = await asyncpg.connect(empty_db)
    try:
        for typed, key in [
            ("ADA.lovelace@example.com", "ada.lovelace@example.com"),
            ("Kim@Example.com", "kim@example.com"),
            ("\uff43arl@example.com", "carl@example.com"),
            ("ann@B\u00dcCHER.de", "ann@xn--bcher-kva.de"),
        ]:
            found = await users.credentials(conn, normalize_email(typed))
            assert found is not None, typed
            assert found.user.email == key
        with pytest.raises(asyncpg.UniqueViolationError) as caught:
            await conn.execute(INSERT, "Bob@Example.org", False)
        assert caught.value.constraint_name == "users_email_normalized_key"
    finally:
        await conn.close()


async def test_addresses_that_become_one_stop_the_migration(empty_db: str, before: Path) -> None:
    """The old key kept full-width letters apart; the new one does not, and which account keeps
    the address is for a person to decide: the migration fails, naming ids, and changes
    nothing."""
    await migrate(empty_db, before)
    ids = await legacy(empty_db, [("ann@example.com", True), ("\uff41nn@example.com", False)])
    with pytest.raises(MigrationError) as caught:
        await migrate(empty_db, MIGRATIONS_DIR)
    first, second = sorted(ids.values())
    assert f"once normalised: {first}, {second}" in str(caught.value)
    assert "example.com" not in str(caught.value)
    conn = await asyncpg.connect(empty_db)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        assert VERSION not in {row["version"] for row in versions}
        assert await conn.fetchval("SELECT count(*) FROM users WHERE status = 'pending'") == 0
    finally:
        await conn.close()
