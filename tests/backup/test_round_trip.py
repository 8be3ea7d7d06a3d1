"""python -m server backup, then restore --verify into a new database: the copy holds exactly
what the backup's snapshot held (orders, items, stock, the audit trail), and the password of
the address never shows in what the commands print or write."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import asyncpg
import httpx
import orjson

from server.db.migrate import load_migrations, status
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.backups import (
    PASSWORD,
    backup_path,
    database_of,
    last_line,
    listing,
    open_shop,
    run_server,
    snapshot_rows,
    with_password,
)
from tests.fixtures.databases import database_url, drop_database
from tests.fixtures.identity import Accounts
from tests.fixtures.orders import order


async def test_backup_then_restore_brings_back_exactly_the_snapshot(
    http: httpx.AsyncClient, accounts: Accounts, own_db: str, tmp_path: Path
) -> None:
    shop = await open_shop(http, accounts)
    before = await snapshot_rows(own_db)
    made = await run_server("backup", "--to", str(tmp_path), database_url=with_password(own_db))
    dump = backup_path(made)
    assert dump.parent == tmp_path
    # Written after the backup: the restored copy must not have it.
    _, buyer = await accounts.create_and_login("customer")
    later = await order(http, buyer, "after-backup", [{"product_id": shop.product, "quantity": 4}])
    assert later.status_code == 201, later.text

    manifest_file = dump.with_name(dump.name + ".json")
    manifest = orjson.loads(manifest_file.read_bytes())
    assert manifest["file"] == dump.name
    assert manifest["size_bytes"] == dump.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert manifest["schema_version"] == load_migrations(MIGRATIONS_DIR)[-1].version
    assert manifest["row_counts"]["orders"] == len(before["orders"]) == 3
    assert manifest["row_counts"]["order_items"] == len(before["items"])
    assert manifest["audit"]["events"] == len(before["audit"]) > 0

    target = database_url(f"{database_of(own_db)}_restored_{secrets.token_hex(2)}")
    try:
        restored = await run_server(
            "restore", str(dump), "--into", with_password(target), "--verify", database_url=own_db
        )
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert last_line(restored.stdout) == target
        assert await snapshot_rows(target) == before
        conn = await asyncpg.connect(target)
        try:
            assert (await status(conn, MIGRATIONS_DIR)).current
            # The restored trail is still append-only.
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass"
                    " AND NOT tgisinternal"
                )
                == 2
            )
        finally:
            await conn.close()
    finally:
        await drop_database(target)

    # The source recorded the backup for the metric; its address and password are nowhere.
    source = await asyncpg.connect(own_db)
    try:
        recorded = await source.fetchrow("SELECT file_name, sha256, size_bytes FROM backups")
    finally:
        await source.close()
    assert recorded is not None
    assert tuple(recorded) == (dump.name, manifest["sha256"], manifest["size_bytes"])
    for text in (made.stdout, made.stderr, restored.stdout, restored.stderr):
        assert PASSWORD not in text
    assert PASSWORD.encode() not in manifest_file.read_bytes()
    assert PASSWORD not in dump.name


async def test_retention_keeps_the_newest_backups(own_db: str, tmp_path: Path) -> None:
    made = []
    for _ in range(3):
        result = await run_server(
            "backup", "--to", str(tmp_path), "--keep", "2", database_url=own_db
        )
        made.append(backup_path(result))
    left = listing(tmp_path)
    assert left == sorted(
        [made[1].name, made[1].name + ".json", made[2].name, made[2].name + ".json"]
    )
    # Files that are no backup of ours stay whatever the limit.
    stray = tmp_path / "hotpath-notes.dump"
    stray.write_text("not a backup")
    backup_path(
        await run_server("backup", "--to", str(tmp_path), "--keep", "1", database_url=own_db)
    )
    assert stray.exists()
    assert len(listing(tmp_path, "*.json")) == 1


async def test_backup_fails_cleanly_when_the_database_does_not_answer(tmp_path: Path) -> None:
    result = await run_server(
        "backup",
        "--to",
        str(tmp_path),
        database_url=f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nothing",
    )
    assert result.returncode == 1
    assert "backup_failed" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    assert listing(tmp_path) == []
