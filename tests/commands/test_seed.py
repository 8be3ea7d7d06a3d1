from __future__ import annotations

import datetime as dt
import io
import secrets
import stat
from dataclasses import replace
from pathlib import Path

import asyncpg
import orjson
import pytest
from argon2 import PasswordHasher
from structlog.typing import FilteringBoundLogger

from server.catalog.seed import seed_products
from server.commands.seed import logins_file, read_logins, seed
from server.commands.tasks import prepare
from server.db.database import Database, create_pool
from server.db.migrate import migrate
from server.db.sqlfiles import load_queries
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from server.users.repository import EmailTaken, NewUser, UsersRepository


async def test_seed_loads_demo_data_once(settings: Settings, empty_db: str, tmp_path: Path) -> None:
    await migrate(empty_db, MIGRATIONS_DIR)
    fresh = replace(settings, database_url=empty_db)
    db = Database(await create_pool(fresh), acquire_timeout=1.0)
    repo = UsersRepository(load_queries())
    try:
        first = await seed(db, repo, tmp_path, users=2500)
        second = await seed(db, repo, tmp_path, users=2500)
    finally:
        await db.close()
    assert first.created == 2503
    assert second.created == 0
    assert second.logins == first.logins
    assert set(first.logins) == {"admin@example.com", "staff@example.com", "user@example.com"}
    assert stat.S_IMODE(logins_file(tmp_path).stat().st_mode) == 0o600
    conn = await asyncpg.connect(empty_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 2503
        admin = await conn.fetchrow(
            "SELECT password_hash, roles FROM users WHERE email = 'admin@example.com'"
        )
        # The demo logins may place orders (HOTPATH_ORDERS_NEED_VERIFIED_EMAIL): verified.
        unverified_demo = await conn.fetchval(
            "SELECT count(*) FROM users WHERE email = ANY ($1) AND email_verified_at IS NULL",
            list(first.logins),
        )
        assert unverified_demo == 0
    finally:
        await conn.close()
    assert admin is not None
    assert admin["roles"] == ["admin"]
    assert PasswordHasher().verify(admin["password_hash"], first.logins["admin@example.com"])
    assert first.logins["admin@example.com"] != first.logins["user@example.com"]


async def test_duplicate_email_in_any_case_is_email_taken(settings: Settings) -> None:
    db = Database(await create_pool(settings), acquire_timeout=1.0)
    repo = UsersRepository(load_queries())
    email = f"Dup-{secrets.token_hex(4)}@Example.com"
    try:
        async with db.transaction() as conn:
            created = await repo.create(conn, NewUser(email, "hash", "First"))
        assert created.email == email
        with pytest.raises(EmailTaken):
            async with db.transaction() as conn:
                await repo.create(conn, NewUser(email.lower(), "hash", "Second"))
    finally:
        await db.close()


async def test_seed_products_copies_a_realistic_catalog_once(
    settings: Settings, empty_db: str
) -> None:
    await migrate(empty_db, MIGRATIONS_DIR)
    db = Database(await create_pool(replace(settings, database_url=empty_db)), acquire_timeout=1.0)
    seen: list[int] = []
    try:
        added = await seed_products(db, 25_000, lambda _label, done, _total: seen.append(done))
        again = await seed_products(db, 25_000)
    finally:
        await db.close()
    assert (added, again) == (25_000, 0)
    assert seen == [10_000, 20_000, 25_000]
    conn = await asyncpg.connect(empty_db)
    try:
        stats = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT category) AS categories, min(price_minor) AS low,"
            " max(price_minor) AS high, count(*) FILTER (WHERE stock = 0) AS empty FROM products"
        )
    finally:
        await conn.close()
    assert stats is not None
    assert stats["n"] == 25_000
    assert stats["categories"] >= 5
    assert 0 < stats["low"] < stats["high"]
    assert 0 < stats["empty"] < 25_000 * 0.2


async def test_seeded_products_were_created_over_the_past_year(
    settings: Settings, empty_db: str
) -> None:
    await migrate(empty_db, MIGRATIONS_DIR)
    db = Database(await create_pool(replace(settings, database_url=empty_db)), acquire_timeout=1.0)
    try:
        assert await seed_products(db, 5_000) == 5_000
    finally:
        await db.close()
    conn = await asyncpg.connect(empty_db)
    try:
        spread = await conn.fetchrow(
            "SELECT now() - min(created_at) AS oldest, now() - max(created_at) AS newest,"
            " count(DISTINCT created_at) AS stamps,"
            " count(DISTINCT date_trunc('month', created_at)) AS months,"
            " count(*) FILTER (WHERE created_at > now() - interval '30 days') AS last_month,"
            " bool_and(updated_at = created_at) AS untouched FROM products"
        )
        # Newer products have higher ids, as in a shop that grew over the year.
        out_of_order = await conn.fetchval(
            "SELECT count(*) FROM (SELECT created_at,"
            " lag(created_at) OVER (ORDER BY id) AS before FROM products) AS t"
            " WHERE created_at <= before"
        )
    finally:
        await conn.close()
    assert spread is not None
    assert dt.timedelta(days=360) < spread["oldest"] < dt.timedelta(days=365, minutes=1)
    assert dt.timedelta(0) <= spread["newest"] < dt.timedelta(days=1)
    assert spread["stamps"] == 5_000
    assert spread["months"] >= 12
    assert 5_000 * 0.05 < spread["last_month"] < 5_000 * 0.12  # about 30/365 of them
    assert spread["untouched"] is True
    assert out_of_order == 0


async def test_a_second_checkout_is_told_why_it_has_no_demo_logins(
    settings: Settings,
    empty_db: str,
    tmp_path: Path,
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
) -> None:
    first_checkout = replace(settings, database_url=empty_db, data_dir=tmp_path / "one")
    await prepare(first_checkout, logger, users=0, products=0)
    assert read_logins(tmp_path / "one")
    events = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    assert "demo_logins_unknown" not in [event["message"] for event in events]

    second_checkout = replace(first_checkout, data_dir=tmp_path / "two")
    await prepare(second_checkout, logger, users=0, products=0)
    assert read_logins(tmp_path / "two") == {}
    events = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    (warning,) = [event for event in events if event["message"] == "demo_logins_unknown"]
    assert str(tmp_path / "two" / "demo_logins.json") in warning["detail"]
    assert "create-admin" in warning["detail"]
    assert "DATABASE_URL=" in warning["detail"]
