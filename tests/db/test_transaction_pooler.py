"""hotpath behind PgBouncer in transaction mode (Debian's 1.18: no prepared statements across
server connections), with HOTPATH_DB_POOLER=transaction.

Two real server processes with eight pool connections each share three server connections
through a PgBouncer of the test's own: registrations, logins, catalog writes and reads, and
concurrent orders with idempotent replays must all answer correctly. Migrations go to the
direct URL, and are refused when only the pooler is given."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from server.db.database import Database, create_pool, open_pool
from server.runtime.settings import Settings, SettingsError
from server.web.errors import DatabaseUnavailable
from tests.fixtures.databases import ADMIN_URL, REDIS_URL, create_database, drop_database
from tests.fixtures.pooler import ThrowawayPgBouncer, pgbouncer
from tests.fixtures.servers import running_servers
from tests.fixtures.users import insert_user

pytestmark = pytest.mark.slow

SERVER_POOL = 8  # pool connections per server process
BOUNCER_POOL = 3  # server connections PgBouncer may open to the database
USERS = 8
PRODUCTS = 3
STOCK = 10
ORDERS = 60
NONE: Literal["none"] = "none"
TRANSACTION: Literal["transaction"] = "transaction"


@pytest.fixture
async def direct_db() -> AsyncIterator[str]:
    url = await create_database("pooler")
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def bouncer() -> Iterator[ThrowawayPgBouncer]:
    upstream = urlsplit(ADMIN_URL).port or 5432
    with pgbouncer(upstream, pool_mode="transaction", pool_size=BOUNCER_POOL) as running:
        yield running


def run_migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        env={**os.environ, "HOTPATH_ENV": "test", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pooler_settings_are_read_and_checked() -> None:
    direct = "postgresql://hotpath:secret@db.internal/hotpath"
    settings = Settings.from_env(
        {"HOTPATH_DB_POOLER": "transaction", "HOTPATH_DATABASE_DIRECT_URL": direct}
    )
    assert (settings.db_pooler, settings.migration_url) == ("transaction", direct)
    assert "secret" not in repr(settings)
    assert Settings.from_env({}).migration_url == Settings.from_env({}).database_url
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"HOTPATH_DB_POOLER": "session", "HOTPATH_DATABASE_DIRECT_URL": "mysql://x:secret@h"}
        )
    assert sorted(p.split()[0] for p in caught.value.problems) == [
        "HOTPATH_DATABASE_DIRECT_URL",
        "HOTPATH_DB_POOLER",
    ]
    assert "secret" not in str(caught.value)


async def test_the_pool_prepares_no_named_statement_in_transaction_mode(
    settings: Settings,
) -> None:
    """With the cache on, asyncpg names the statements it prepares; behind a transaction
    pooler the next transaction may land where that name does not exist."""
    for pooler, named in ((NONE, True), (TRANSACTION, False)):
        pool = await create_pool(replace(settings, db_pooler=pooler, db_pool_min=1, db_pool_max=1))
        db = Database(pool, acquire_timeout=2.0)
        try:
            async with db.connection() as conn:
                assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
                prepared = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
            assert (prepared > 0) is named, (pooler, prepared)
        finally:
            await db.close()


async def test_a_timed_out_statement_is_cancelled_in_postgres_through_the_pooler(
    direct_db: str, bouncer: ThrowawayPgBouncer
) -> None:
    """Timeouts are asyncpg's own cancel requests, not a SET statement_timeout that a pooler
    would leave on a server connection: PgBouncer forwards the cancel to the server connection
    running the statement, which is then free for the next transaction."""
    pool = await open_pool(
        bouncer.url(direct_db), min_size=1, max_size=1, command_timeout=0.5, statement_cache_size=0
    )
    db = Database(pool, acquire_timeout=5.0)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction() as conn:
                await conn.fetchval("SELECT pg_sleep(30)")
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT $1::int * 2", 21) == 42
    finally:
        await db.close()
    watcher = await asyncpg.connect(direct_db)
    try:
        running = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
        )
    finally:
        await watcher.close()
    assert running == 0


def test_migrations_go_to_the_direct_url_and_never_through_the_pooler(
    direct_db: str, bouncer: ThrowawayPgBouncer, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": bouncer.url(direct_db),
        "HOTPATH_DB_POOLER": "transaction",
        "HOTPATH_DATA_DIR": str(tmp_path),
    }
    refused = run_migrate(env)
    assert refused.returncode != 0
    assert "HOTPATH_DATABASE_DIRECT_URL" in refused.stderr + refused.stdout

    async def tables() -> list[str]:
        conn = await asyncpg.connect(direct_db)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        return [row["tablename"] for row in rows]

    assert asyncio.run(tables()) == []  # nothing half-done by the refused run
    applied = run_migrate({**env, "HOTPATH_DATABASE_DIRECT_URL": direct_db})
    assert applied.returncode == 0, applied.stderr
    assert "schema_migrations" in asyncio.run(tables())


def test_a_real_server_behind_pgbouncer_in_transaction_mode(
    direct_db: str, bouncer: ThrowawayPgBouncer, tmp_path: Path
) -> None:
    pooled = bouncer.url(direct_db)
    migrated = run_migrate(
        {
            "DATABASE_URL": pooled,
            "HOTPATH_DB_POOLER": "transaction",
            "HOTPATH_DATABASE_DIRECT_URL": direct_db,
            "HOTPATH_DATA_DIR": str(tmp_path),
        }
    )
    assert migrated.returncode == 0, migrated.stderr
    env = {
        "HOTPATH_DB_POOLER": "transaction",
        "HOTPATH_DATABASE_DIRECT_URL": direct_db,
        "HOTPATH_DB_POOL_MIN": str(SERVER_POOL),
        "HOTPATH_DB_POOL_MAX": str(SERVER_POOL),
        # Correctness is under test, not speed: on a busy box sixty orders queued for three
        # server connections may wait longer than the default second (then a correct 503).
        "HOTPATH_DB_ACQUIRE_TIMEOUT": "20",
        "HOTPATH_DB_COMMAND_TIMEOUT": "20",
        "HOTPATH_REQUEST_TIMEOUT": "30",
    }
    with running_servers(
        2, database_url=pooled, redis_url=REDIS_URL, data_dir=tmp_path, extra_env=env
    ) as bases:
        asyncio.run(exercise(bases, direct_db, bouncer))


async def exercise(bases: list[str], direct: str, bouncer: ThrowawayPgBouncer) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        httpx.AsyncClient(base_url=bases[0], limits=limits, timeout=30) as first,
        httpx.AsyncClient(base_url=bases[1], limits=limits, timeout=30) as second,
    ):
        clients = [first, second]
        buyers = await register_and_login(clients, direct)
        _, staff_email, staff_password = await insert_user(direct, "staff")
        login = await first.post(
            "/v1/auth/login", json={"email": staff_email, "password": staff_password}
        )
        assert login.status_code == 200, login.text
        staff = {"authorization": f"Bearer {login.json()['access_token']}"}
        products = await asyncio.gather(
            *(new_product(clients[n % 2], staff) for n in range(PRODUCTS))
        )

        # Orders from every buyer on every product, both processes at once, with catalog reads
        # beside them; then every order's key sent again.
        keys = [f"pooler-{secrets.token_hex(6)}" for _ in range(ORDERS)]
        plans = [
            (clients[n % 2], buyers[n % USERS], keys[n], products[n % PRODUCTS])
            for n in range(ORDERS)
        ]
        reads = [clients[n % 2].get(f"/v1/products/{products[n % PRODUCTS]}") for n in range(40)]
        placed, looked = await asyncio.gather(
            asyncio.gather(*(place(*plan) for plan in plans)), asyncio.gather(*reads)
        )
        assert {r.status_code for r in looked} == {200}, [r.text for r in looked]
        statuses = Counter(r.status_code for r in placed)
        assert statuses == Counter({201: PRODUCTS * STOCK, 409: ORDERS - PRODUCTS * STOCK})
        for refused in (r for r in placed if r.status_code == 409):
            assert refused.json()["type"].endswith("out-of-stock"), refused.text
        replayed = await asyncio.gather(
            *(place(clients[(n + 1) % 2], *plan[1:]) for n, plan in enumerate(plans))
        )
        for first_answer, again in zip(placed, replayed, strict=True):
            if first_answer.status_code == 201:
                assert again.status_code == 201, again.text
                assert again.json()["id"] == first_answer.json()["id"]
        listing = await second.get("/v1/products", params={"limit": 100}, headers=staff)
        assert listing.status_code == 200, listing.text

        # PgBouncer really multiplexed: sixteen pool connections from the two processes, never
        # more than BOUNCER_POOL server connections to PostgreSQL.
        database = urlsplit(direct).path.lstrip("/")
        clients_seen = [c for c in bouncer.admin("SHOW CLIENTS") if c["database"] == database]
        assert len(clients_seen) >= 2 * SERVER_POOL, clients_seen
        servers_seen = [s for s in bouncer.admin("SHOW SERVERS") if s["database"] == database]
        assert 0 < len(servers_seen) <= BOUNCER_POOL, servers_seen

    conn = await asyncpg.connect(direct)
    try:
        stock = await conn.fetch("SELECT stock FROM products WHERE id = ANY($1)", products)
        assert [row["stock"] for row in stock] == [0] * PRODUCTS
        created = sorted(r.json()["id"] for r in placed if r.status_code == 201)
        stored = await conn.fetch(
            "SELECT o.id, i.quantity FROM orders o JOIN order_items i ON i.order_id = o.id"
            " WHERE i.product_id = ANY($1) ORDER BY o.id",
            products,
        )
        assert [row["id"] for row in stored] == created
        assert sum(row["quantity"] for row in stored) == PRODUCTS * STOCK
        assert (
            await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = ANY($1)", keys)
            == PRODUCTS * STOCK
        )
    finally:
        await conn.close()


async def register_and_login(clients: list[httpx.AsyncClient], direct: str) -> list[dict[str, str]]:
    """Registrations through both processes (each a pending account, which only its mailbox can
    confirm), then USERS confirmed accounts signing in, alternating the processes."""
    tag = secrets.token_hex(4)
    addresses = [f"pooler-{tag}-{n}@example.com" for n in range(USERS)]
    registered = await asyncio.gather(
        *(
            clients[n % 2].post(
                "/v1/auth/register", json={"email": a, "password": "pooled passphrase " + tag}
            )
            for n, a in enumerate(addresses)
        )
    )
    assert {r.status_code for r in registered} == {202}, [r.text for r in registered]
    conn = await asyncpg.connect(direct)
    try:
        pending = await conn.fetch("SELECT status FROM users WHERE email = ANY($1)", addresses)
    finally:
        await conn.close()
    assert [row["status"] for row in pending] == ["pending"] * USERS
    accounts = [(await insert_user(direct))[1:] for _ in range(USERS)]
    logins = await asyncio.gather(
        *(
            clients[n % 2].post("/v1/auth/login", json={"email": e, "password": p})
            for n, (e, p) in enumerate(accounts)
        )
    )
    assert {r.status_code for r in logins} == {200}, [r.text for r in logins]
    return [{"authorization": f"Bearer {r.json()['access_token']}"} for r in logins]


async def new_product(client: httpx.AsyncClient, staff: dict[str, str]) -> int:
    response = await client.post(
        "/v1/products",
        json={
            "sku": f"pooler-{secrets.token_hex(5)}",
            "name": "Pooled item",
            "category": "tools",
            "price": {"amount_minor": 250, "currency": "EUR"},
            "stock": STOCK,
        },
        headers=staff,
    )
    assert response.status_code == 201, response.text
    product_id: int = response.json()["id"]
    return product_id


async def place(
    client: httpx.AsyncClient, buyer: dict[str, str], key: str, product: int
) -> httpx.Response:
    response = await client.post(
        "/v1/orders",
        json={"items": [{"product_id": product, "quantity": 1}]},
        headers={**buyer, "idempotency-key": key},
    )
    assert response.status_code in (201, 409), response.text
    return response
