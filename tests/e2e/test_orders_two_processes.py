"""Two real server processes sell one product with 10 in stock to 200 concurrent buyers'
requests: exactly 10 orders succeed, the other 190 are 409, and stock never goes below zero.
Repeated over many rounds (a fresh product each) to shake out races; each process must have
both sold and refused, by what its client saw and by its own request metrics."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from tests.fixtures.databases import REDIS_URL
from tests.fixtures.servers import running_servers

pytestmark = pytest.mark.slow

ROUNDS = 20  # about 0.9 s each
STOCK = 10
REQUESTS = 200


@pytest.fixture
def two_servers(migrated_db: str, tmp_path: Path) -> Iterator[list[str]]:
    with running_servers(
        2, database_url=migrated_db, redis_url=REDIS_URL, data_dir=tmp_path
    ) as bases:
        yield bases


async def insert_buyer(conn: asyncpg.Connection) -> tuple[int, str, str]:
    email = f"buyer-{secrets.token_hex(4)}@example.com"
    password = "two process buyer " + secrets.token_hex(4)
    digest = PasswordHasher(time_cost=1, memory_cost=1024).hash(password)
    user_id = await conn.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id", email, digest
    )
    return int(user_id), email, password


async def insert_product(conn: asyncpg.Connection, stock: int) -> int:
    product_id = await conn.fetchval(
        "INSERT INTO products (sku, name, category, price_minor, currency, stock)"
        " VALUES ($1, 'Two-process item', 'tools', 300, 'EUR', $2) RETURNING id",
        f"e2e-{secrets.token_hex(6)}",
        stock,
    )
    return int(product_id)


async def watch_stock(dsn: str, product_id: int, stop: asyncio.Event) -> list[int]:
    """Every stock level seen while the round runs (on its own connection)."""
    seen: list[int] = []
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            seen.append(await conn.fetchval("SELECT stock FROM products WHERE id = $1", product_id))
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return seen


_ORDERS_COUNT = re.compile(
    r'^http_server_request_duration_seconds_count\{(?=[^}]*http_request_method="POST")'
    r'(?=[^}]*http_route="/v1/orders")[^}]*http_response_status_code="(\d+)"[^}]*\} (\S+)$',
    re.MULTILINE,
)


async def orders_answered(client: httpx.AsyncClient) -> Counter[int]:
    """POST /v1/orders answers by status, as the process behind ``client`` counted them."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    counts: Counter[int] = Counter()
    for status, value in _ORDERS_COUNT.findall(response.text):
        counts[int(status)] += int(float(value))
    return counts


async def one_round(
    clients: list[httpx.AsyncClient], headers: dict[str, str], dsn: str, conn: asyncpg.Connection
) -> list[Counter[int]]:
    """Statuses by process: request ``n`` goes to process ``n % 2``."""
    product = await insert_product(conn, STOCK)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_stock(dsn, product, stop))
    tag = secrets.token_hex(4)
    body = {"items": [{"product_id": product, "quantity": 1}]}
    try:
        responses = await asyncio.gather(
            *(
                clients[n % 2].post(
                    "/v1/orders", json=body, headers={**headers, "idempotency-key": f"{tag}-{n}"}
                )
                for n in range(REQUESTS)
            )
        )
    finally:
        stop.set()
        seen = await watcher
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == STOCK, sorted(set(statuses))
    assert statuses.count(409) == REQUESTS - STOCK, sorted(set(statuses))
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["type"].endswith("out-of-stock"), refused.text
        assert refused.json()["items"] == [{"product_id": product, "requested": 1, "available": 0}]
    assert seen
    assert min(seen) >= 0
    assert seen == sorted(seen, reverse=True)  # stock only ever went down in this round
    assert await conn.fetchval("SELECT stock FROM products WHERE id = $1", product) == 0
    created_ids = sorted(r.json()["id"] for r in responses if r.status_code == 201)
    assert len(set(created_ids)) == STOCK
    rows = await conn.fetch(
        "SELECT o.id, o.status, o.total_minor, i.quantity FROM orders o"
        " JOIN order_items i ON i.order_id = o.id WHERE i.product_id = $1 ORDER BY o.id",
        product,
    )
    assert [r["id"] for r in rows] == created_ids
    assert sum(r["quantity"] for r in rows) == STOCK
    assert {(r["status"], r["total_minor"]) for r in rows} == {("placed", 300)}
    keys = await conn.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE key LIKE $1", f"{tag}-%"
    )
    assert keys == STOCK  # refused orders store no key
    events = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'order.placed' AND aggregate_id = ANY($1)",
        [str(i) for i in created_ids],
    )
    assert events == STOCK
    return [Counter(statuses[index::2]) for index in (0, 1)]


async def until_counted(client: httpx.AsyncClient, expected: Counter[int]) -> None:
    """A request is counted just after its answer is sent: allow the last ones a moment."""
    for _ in range(50):
        counted = await orders_answered(client)
        if counted == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError((client.base_url, counted, expected))


def test_two_processes_never_oversell(two_servers: list[str], migrated_db: str) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(migrated_db)
        try:
            _, email, password = await insert_buyer(conn)
            limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
            async with (
                httpx.AsyncClient(base_url=two_servers[0], limits=limits, timeout=30) as first,
                httpx.AsyncClient(base_url=two_servers[1], limits=limits, timeout=30) as second,
            ):
                login = await first.post(
                    "/v1/auth/login", json={"email": email, "password": password}
                )
                assert login.status_code == 200, login.text
                headers = {"authorization": f"Bearer {login.json()['access_token']}"}
                assert (await second.get("/v1/users/me", headers=headers)).status_code == 200
                clients = [first, second]
                before = [await orders_answered(client) for client in clients]
                tallies: list[Counter[int]] = [Counter(), Counter()]
                for _ in range(ROUNDS):
                    split = await one_round(clients, headers, migrated_db, conn)
                    for tally, answered in zip(tallies, split, strict=True):
                        tally.update(answered)
                # The load really split: each process sold some of the stock and refused
                # some buyers, so the contention crossed processes.
                for tally in tallies:
                    assert tally[201] > 0, tallies
                    assert tally[409] > 0, tallies
                # And each process counted those answers itself (metrics are per process here).
                for client, tally, baseline in zip(clients, tallies, before, strict=True):
                    await until_counted(client, baseline + tally)
        finally:
            await conn.close()

    asyncio.run(scenario())
