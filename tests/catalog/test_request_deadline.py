"""A write stuck behind a row lock answers 503 when the request's time is up, writes nothing,
leaves no statement waiting in PostgreSQL, and the same write succeeds once the lock is gone."""

from __future__ import annotations

import time
from dataclasses import replace

import asyncpg
import httpx
import pytest

from server.runtime.settings import Settings
from tests.fixtures.catalog import Catalog
from tests.fixtures.identity import Accounts
from tests.fixtures.support import assert_problem

DEADLINE = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, request_timeout=DEADLINE)


async def waiting_on_locks(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND application_name = 'hotpath' AND datname = current_database()"
    )
    return count


async def test_a_patch_behind_a_row_lock_ends_at_the_deadline(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    product = await catalog.create(name="Kettle")
    path = f"/v1/products/{product['id']}"
    headers = {**catalog.headers, "if-match": product["etag"]}

    async with db.transaction():
        await db.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product["id"])
        started = time.perf_counter()
        stuck = await http.patch(path, json={"name": "Teapot"}, headers=headers)
        elapsed = time.perf_counter() - started
        assert await waiting_on_locks(db) == 0  # the update was cancelled in the server

    assert_problem(stuck, 503, "deadline-exceeded")
    assert stuck.headers["retry-after"] == "1"
    assert DEADLINE * 0.9 < elapsed < DEADLINE + 1.0
    fetched = await http.get(path)
    assert fetched.headers["etag"] == product["etag"]
    assert fetched.json()["name"] == "Kettle"
    retried = await http.patch(path, json={"name": "Teapot"}, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["name"] == "Teapot"


async def test_an_order_behind_a_stock_lock_leaves_no_order_and_no_key(
    http: httpx.AsyncClient, catalog: Catalog, accounts: Accounts, db: asyncpg.Connection
) -> None:
    product = await catalog.create(stock=3)
    _, buyer = await accounts.create_and_login()
    order = {"items": [{"product_id": product["id"], "quantity": 1}]}
    headers = {**buyer.headers, "idempotency-key": "deadline-1"}

    async with db.transaction():
        await db.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product["id"])
        stuck = await http.post("/v1/orders", json=order, headers=headers)
        assert await waiting_on_locks(db) == 0

    assert_problem(stuck, 503, "deadline-exceeded")
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", product["id"]) == 3
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'deadline-1'") == 0
    # The client's retry with the same key is a first attempt, not a replay or a conflict.
    placed = await http.post("/v1/orders", json=order, headers=headers)
    assert placed.status_code == 201, placed.text
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", product["id"]) == 2
