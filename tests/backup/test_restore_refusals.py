"""A restore that must not happen does not: into a database that holds anything (without
--clean), from a damaged dump, or (with --verify) of a copy that does not match its manifest,
which leaves the target as it was and no scratch database behind."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from server.backup import verify
from server.backup.manifest import read_checked
from server.backup.repository import BackupRepository
from server.db.sqlfiles import load_queries
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.backups import (
    backup_path,
    database_exists,
    database_of,
    open_shop,
    run_server,
)
from tests.fixtures.databases import ADMIN_URL, database_url, drop_database
from tests.fixtures.identity import Accounts


@pytest.fixture
async def dump(http: httpx.AsyncClient, accounts: Accounts, own_db: str, tmp_path: Path) -> Path:
    await open_shop(http, accounts)
    return backup_path(await run_server("backup", "--to", str(tmp_path), database_url=own_db))


@pytest.fixture
async def target(own_db: str) -> AsyncIterator[str]:
    url = database_url(f"{database_of(own_db)}_target_{secrets.token_hex(2)}")
    yield url
    await drop_database(url)


async def _orders(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders"))
    finally:
        await conn.close()


async def test_a_target_that_holds_anything_is_refused_unless_clean(
    dump: Path, own_db: str, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    await open_shop(http, accounts)  # the source now has 6 orders, the backup 3
    refused = await run_server("restore", str(dump), "--into", own_db, database_url=own_db)
    assert refused.returncode == 1
    assert "is not empty" in refused.stderr
    assert await _orders(own_db) == 6
    replaced = await run_server(
        "restore", str(dump), "--into", own_db, "--clean", "--verify", database_url=own_db
    )
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert await _orders(own_db) == 3


async def test_a_damaged_dump_is_refused_before_anything_is_created(
    dump: Path, target: str, tmp_path: Path
) -> None:
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    damaged = copy_dir / dump.name
    shutil.copy(dump, damaged)
    shutil.copy(dump.with_name(dump.name + ".json"), copy_dir)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    result = await run_server("restore", str(damaged), "--into", target, database_url=target)
    assert result.returncode == 1
    assert "damaged" in result.stderr
    assert not await database_exists(database_of(target))
    # Without its manifest a dump is no backup either.
    damaged.with_name(damaged.name + ".json").unlink()
    result = await run_server("restore", str(damaged), "--into", target, database_url=target)
    assert result.returncode == 1
    assert "no manifest" in result.stderr


async def test_verify_stops_a_copy_that_differs_from_its_manifest(dump: Path, target: str) -> None:
    manifest_file = dump.with_name(dump.name + ".json")
    manifest = orjson.loads(manifest_file.read_bytes())
    manifest["row_counts"]["orders"] += 1
    manifest["audit"]["digest"] = "0" * 64
    manifest_file.write_bytes(orjson.dumps(manifest))
    result = await run_server(
        "restore", str(dump), "--into", target, "--verify", database_url=target
    )
    assert result.returncode == 1
    assert "table orders: 3 rows, the backup had 4" in result.stderr
    assert "audit trail: " in result.stderr
    conn = await asyncpg.connect(target)
    try:  # created, but nothing restored into it
        assert not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public')"
        )
    finally:
        await conn.close()
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        left = await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            database_of(target)[:40] + "%_verify_%",
        )
    finally:
        await admin.close()
    assert left == []


async def test_the_checks_find_each_kind_of_damage(dump: Path, target: str) -> None:
    restored = await run_server("restore", str(dump), "--into", target, database_url=target)
    assert restored.returncode == 0, restored.stderr
    manifest = read_checked(dump)
    repo = BackupRepository(load_queries())
    conn = await asyncpg.connect(
        target, server_settings={"TimeZone": "UTC", "DateStyle": "ISO, MDY"}
    )
    try:
        assert await verify.problems(conn, repo, manifest, MIGRATIONS_DIR) == []
        await conn.execute(
            """
            ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete;
            DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events);
            ALTER TABLE order_items DROP CONSTRAINT order_items_product_id_fkey;
            UPDATE order_items SET product_id = -1
            WHERE order_id = (SELECT min(order_id) FROM order_items);
            ALTER TABLE products DROP CONSTRAINT products_stock_check;
            UPDATE products SET stock = -2;
            UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1;
            """
        )
        found = "\n".join(await verify.problems(conn, repo, manifest, MIGRATIONS_DIR))
    finally:
        await conn.close()
    assert "audit trail: " in found
    assert "1 of its 2 append-only triggers" in found
    assert "items without product" in found
    assert "products with negative stock" in found
    assert "migration 0001_baseline.sql: checksum differs" in found
    assert "schema_migrations differs from the manifest" in found
