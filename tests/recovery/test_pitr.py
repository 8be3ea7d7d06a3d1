"""Point-in-time recovery with the shipped pgBackRest configuration: a full backup, orders
placed through the API, the moment noted, more orders and a cancellation, then the backup and
the archived WAL restored to that moment into a fresh data directory. Exactly the orders
acknowledged before the moment exist there, and the stock agrees with them."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from server.backup.repository import BackupRepository
from server.db.sqlfiles import load_queries
from tests.fixtures.cluster import ThrowawayPostgres
from tests.fixtures.identity import Accounts, Tokens
from tests.fixtures.orders import new_product, order
from tests.fixtures.pitr import PgBackRest
from tests.recovery.conftest import DATABASE

# About 25 s on a quiet box (two clusters, a backup, a restore); the suite's 120 s default
# would cut it off on one where the other workers take the CPUs.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
STOCK = 100


async def _place(
    http: httpx.AsyncClient, buyer: Tokens, product: int, key: str, quantity: int
) -> int:
    answer = await order(http, buyer, key, [{"product_id": product, "quantity": quantity}])
    assert answer.status_code == 201, answer.text
    order_id: int = answer.json()["id"]
    return order_id


async def _server_time(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        moment: str = await conn.fetchval("SELECT clock_timestamp()::text")
        return moment
    finally:
        await conn.close()


async def test_restore_to_a_moment_keeps_exactly_the_orders_acknowledged_before_it(
    archived_cluster: tuple[ThrowawayPostgres, PgBackRest],
    archived_db: str,
    http: httpx.AsyncClient,
    accounts: Accounts,
) -> None:
    backrest = archived_cluster[1]
    _, staff = await accounts.create_and_login("staff")
    _, buyer = await accounts.create_and_login("customer")
    product = await new_product(http, staff, stock=STOCK)
    await asyncio.to_thread(backrest.run, "--type=full", "backup")

    before = {await _place(http, buyer, product, f"before-{n}", n) for n in (1, 2, 3, 4)}
    moment = await _server_time(archived_db)
    after = {await _place(http, buyer, product, f"after-{n}", n) for n in (5, 6)}
    cancelled = await http.post(f"/v1/orders/{min(before)}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200, cancelled.text
    # Switches to a new WAL segment and waits until the one holding all of it is archived.
    await asyncio.to_thread(backrest.run, "check")

    restored = ThrowawayPostgres()
    try:
        await asyncio.to_thread(backrest.restore_to_time, restored, moment)
        await asyncio.to_thread(restored.start)
        conn = await asyncpg.connect(restored.url(DATABASE))
        try:
            for _ in range(600):  # hot standby answers while recovery runs, then promotes
                if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the restored cluster never left recovery")
            orders = await conn.fetch("SELECT id, status FROM orders ORDER BY id")
            stock = await conn.fetchval("SELECT stock FROM products WHERE id = $1", product)
            sold = await conn.fetchval(
                "SELECT sum(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id"
                " WHERE i.product_id = $1 AND o.status <> 'cancelled'",
                product,
            )
            problems = await BackupRepository(load_queries()).consistency_problems(conn)
        finally:
            await conn.close()
    finally:
        restored.stop()

    assert {r["id"] for r in orders} == before
    assert not before & after
    # The cancellation came after the moment: undone with the rest.
    assert {r["status"] for r in orders} == {"placed"}
    assert stock == STOCK - (1 + 2 + 3 + 4) == STOCK - sold
    assert problems == {}
