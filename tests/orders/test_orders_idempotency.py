"""Idempotency keys, all-or-nothing writes, outbox events, listings and input validation."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
from typing import Any

import asyncpg
import httpx
import pytest

from server.app import HotpathApp
from server.orders.repository import OrdersRepository
from server.runtime.settings import Settings
from server.web.state import app_container
from tests.fixtures.identity import Accounts
from tests.fixtures.orders import Shop, new_product, order

PROBLEM = "urn:hotpath:problem:"


async def fetchval(app: HotpathApp, sql: str, *args: Any) -> Any:
    async with app_container(app).db.connection() as conn:
        return await conn.fetchval(sql, *args)


async def fetch(app: HotpathApp, sql: str, *args: Any) -> list[Any]:
    async with app_container(app).db.connection() as conn:
        return list(await conn.fetch(sql, *args))


async def stock_of(app: HotpathApp, product: int) -> int:
    value: int = await fetchval(app, "SELECT stock FROM products WHERE id = $1", product)
    return value


async def orders_of(app: HotpathApp, user_id: int) -> int:
    count: int = await fetchval(app, "SELECT count(*) FROM orders WHERE user_id = $1", user_id)
    return count


async def keys_of(app: HotpathApp, user_id: int) -> int:
    count: int = await fetchval(
        app, "SELECT count(*) FROM idempotency_keys WHERE user_id = $1", user_id
    )
    return count


async def test_one_key_fifty_times_at_once(
    http: httpx.AsyncClient, app: HotpathApp, accounts: Accounts
) -> None:
    _, staff = await accounts.create_and_login("staff")
    alice_account, alice = await accounts.create_and_login("customer")
    bob_account, bob = await accounts.create_and_login("customer")
    product = await new_product(http, staff, stock=100, price=120)
    items = [{"product_id": product, "quantity": 2}]
    responses = await asyncio.gather(*(order(http, alice, "one-key", items) for _ in range(50)))
    created = [r for r in responses if r.status_code == 201]
    assert created
    assert {r.content for r in created} == {created[0].content}
    for refused in (r for r in responses if r.status_code != 201):
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"] == PROBLEM + "idempotency-in-flight"
    assert await orders_of(app, alice_account.id) == 1
    assert await keys_of(app, alice_account.id) == 1
    assert await stock_of(app, product) == 98

    # Once settled, every retry is the byte-identical replay.
    replay = await order(http, alice, "one-key", items)
    assert (replay.status_code, replay.content) == (201, created[0].content)

    # The same key with another body: 422, and nothing written.
    other = await order(http, alice, "one-key", [{"product_id": product, "quantity": 3}])
    assert other.status_code == 422
    assert other.json()["type"] == PROBLEM + "idempotency-key-reused"
    assert await orders_of(app, alice_account.id) == 1
    assert await stock_of(app, product) == 98

    # The same key for another user is a key of its own.
    bobs = await order(http, bob, "one-key", items)
    assert bobs.status_code == 201, bobs.text
    assert bobs.json()["id"] != created[0].json()["id"]
    assert bobs.json()["user_id"] == bob_account.id
    assert await orders_of(app, bob_account.id) == 1
    assert await stock_of(app, product) == 96

    # Kept for at least 24 hours.
    row = (
        await fetch(
            app,
            "SELECT created_at, expires_at, expires_at - now() AS left"
            " FROM idempotency_keys WHERE user_id = $1 AND key = 'one-key'",
            alice_account.id,
        )
    )[0]
    assert row["expires_at"] - row["created_at"] >= dt.timedelta(hours=24)
    assert row["left"] >= dt.timedelta(hours=23, minutes=59)


async def blocked_by(holder: asyncpg.Connection, *, seconds: float = 5.0) -> None:
    """Return once some backend waits on a lock ``holder`` holds (the first request is stuck)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        waiting = await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND $1 = ANY (pg_blocking_pids(pid))",
            holder.get_server_pid(),
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first request never reached the locked row")


async def test_a_retry_while_the_first_is_running_is_a_409(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop, settings: Settings
) -> None:
    product = await shop.product(stock=5, price=400)
    items = [{"product_id": product, "quantity": 2}]
    holder = await asyncpg.connect(settings.database_url)
    first: asyncio.Task[httpx.Response] | None = None
    try:
        # The product's row lock holds the first request in flight: it has taken the key's
        # lock and waits to take the stock.
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product)
        first = asyncio.create_task(shop.order("in-flight", items))
        await blocked_by(holder)

        # Bounded so that a retry which queued behind the first fails here rather than hangs.
        retry = await asyncio.wait_for(shop.order("in-flight", items), timeout=5)
        assert retry.status_code == 409, retry.text
        assert retry.headers["content-type"].startswith("application/problem+json")
        assert retry.json()["type"] == PROBLEM + "idempotency-in-flight"
        assert not first.done()
        assert await orders_of(app, shop.buyer_account.id) == 0
        assert await keys_of(app, shop.buyer_account.id) == 0

        await hold.rollback()
        placed = await asyncio.wait_for(first, timeout=5)
    finally:
        await holder.close()  # releases the row lock if an assertion left it held
        if first is not None and not first.done():
            first.cancel()
    assert placed.status_code == 201, placed.text
    assert placed.json()["total_minor"] == 800
    assert await orders_of(app, shop.buyer_account.id) == 1
    assert await keys_of(app, shop.buyer_account.id) == 1
    assert await stock_of(app, product) == 3

    # Settled: the same key and body replay the first answer byte for byte.
    replay = await shop.order("in-flight", items)
    assert (replay.status_code, replay.content) == (201, placed.content)
    assert await orders_of(app, shop.buyer_account.id) == 1
    assert await stock_of(app, product) == 3


async def test_a_refused_order_keeps_no_key(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop
) -> None:
    product = await shop.product(stock=1)
    items = [{"product_id": product, "quantity": 2}]
    refused = await shop.order("retry-me", items)
    assert refused.status_code == 409
    assert refused.json()["type"] == PROBLEM + "out-of-stock"
    assert await keys_of(app, shop.buyer_account.id) == 0
    assert await orders_of(app, shop.buyer_account.id) == 0
    async with app_container(app).db.connection() as conn:
        await conn.execute("UPDATE products SET stock = 5 WHERE id = $1", product)
    retried = await shop.order("retry-me", items)
    assert retried.status_code == 201, retried.text
    assert await stock_of(app, product) == 3
    assert await keys_of(app, shop.buyer_account.id) == 1


async def test_key_and_order_commit_together(
    app: HotpathApp,
    http: httpx.AsyncClient,
    shop: Shop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = await shop.product(stock=7)
    items = [{"product_id": product, "quantity": 3}]

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(OrdersRepository, "store_response", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        failed = await raw.post(
            "/v1/orders",
            json={"items": items},
            headers={**shop.buyer.headers, "idempotency-key": "k"},
        )
    assert failed.status_code == 500
    assert await orders_of(app, shop.buyer_account.id) == 0
    assert await keys_of(app, shop.buyer_account.id) == 0
    assert await stock_of(app, product) == 7
    events = await fetchval(
        app,
        "SELECT count(*) FROM outbox WHERE topic LIKE 'order.%' AND payload->>'user_id' = $1",
        str(shop.buyer_account.id),
    )
    assert events == 0

    monkeypatch.undo()
    retried = await shop.order("k", items)
    assert retried.status_code == 201, retried.text
    assert await stock_of(app, product) == 4


async def test_outbox_events_carry_the_order(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop
) -> None:
    product = await shop.product(stock=10, price=250)
    items = [{"product_id": product, "quantity": 2}]
    first = (await shop.order("ev-1", items)).json()
    second = (await shop.order("ev-2", items)).json()
    await shop.order("ev-1", items)  # a replay writes no second event
    assert (
        await http.post(f"/v1/orders/{first['id']}/cancel", headers=shop.buyer.headers)
    ).status_code == 200
    assert (
        await http.post(f"/v1/orders/{second['id']}/fulfil", headers=shop.staff.headers)
    ).status_code == 200
    rows = await fetch(
        app,
        "SELECT topic, aggregate_type, aggregate_id, payload FROM outbox"
        " WHERE aggregate_type = 'order' AND aggregate_id = ANY($1) ORDER BY id",
        [str(first["id"]), str(second["id"])],
    )
    seen = [(r["topic"], r["aggregate_id"]) for r in rows]
    assert seen == [
        ("order.placed", str(first["id"])),
        ("order.placed", str(second["id"])),
        ("order.cancelled", str(first["id"])),
        ("order.fulfilled", str(second["id"])),
    ]
    statuses = ["placed", "placed", "cancelled", "fulfilled"]
    for row, status in zip(rows, statuses, strict=True):
        payload = row["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        assert payload["status"] == status
        assert payload["user_id"] == shop.buyer_account.id
        assert payload["id"] == int(row["aggregate_id"])
        assert (payload["currency"], payload["total_minor"]) == ("EUR", 500)
        assert payload["items"] == [{"product_id": product, "quantity": 2, "unit_price_minor": 250}]

    # Every stock movement an order causes is a stock.changed event of the product, as the
    # catalog's own stock changes are: taken when placed, given back when cancelled.
    moves = await fetch(
        app,
        "SELECT aggregate_type, aggregate_id, payload FROM outbox WHERE topic = 'stock.changed'"
        " AND payload->>'order_id' = ANY($1) ORDER BY id",
        [str(first["id"]), str(second["id"])],
    )
    changes = []
    for row in moves:
        payload = row["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        assert (row["aggregate_type"], row["aggregate_id"]) == ("product", str(product))
        assert payload["id"] == product
        changes.append((payload["order_id"], payload["reason"], payload["delta"], payload["stock"]))
    assert changes == [
        (first["id"], "order.placed", -2, 8),
        (second["id"], "order.placed", -2, 6),
        (first["id"], "order.cancelled", 2, 8),
    ]


async def test_listing_filters_and_pages(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, staff = await accounts.create_and_login("staff")
    alice_account, alice = await accounts.create_and_login("customer")
    bob_account, bob = await accounts.create_and_login("customer")
    product = await new_product(http, staff, stock=100)
    items = [{"product_id": product, "quantity": 1}]
    alice_ids = []
    for n in range(7):
        placed = await order(http, alice, f"list-{n}", items)
        alice_ids.append(placed.json()["id"])
    # Several orders created concurrently (they may share created_at ties).
    burst = await asyncio.gather(*(order(http, alice, f"burst-{n}", items) for n in range(5)))
    alice_ids += [r.json()["id"] for r in burst]
    bob_id = (await order(http, bob, "list-b", items)).json()["id"]
    for cancelled in alice_ids[:3]:
        response = await http.post(f"/v1/orders/{cancelled}/cancel", headers=alice.headers)
        assert response.status_code == 200

    async def walk(headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(50):
            query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
            response = await http.get("/v1/orders", params=query, headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["data"]) <= 2
            found += page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return found
        raise AssertionError("pagination did not end")

    everything = await walk(staff.headers, user_id=alice_account.id)
    ids = [o["id"] for o in everything]
    assert len(ids) == len(set(ids))  # no order twice across pages
    assert sorted(ids) == sorted(alice_ids)
    stamps = [(dt.datetime.fromisoformat(o["created_at"]), o["id"]) for o in everything]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    cancelled = await walk(staff.headers, user_id=alice_account.id, status="cancelled")
    assert sorted(o["id"] for o in cancelled) == sorted(alice_ids[:3])
    still_placed = await walk(staff.headers, user_id=alice_account.id, status="placed")
    assert sorted(o["id"] for o in still_placed) == sorted(alice_ids[3:])
    bobs = await walk(staff.headers, user_id=bob_account.id)
    assert [o["id"] for o in bobs] == [bob_id]

    # Customers see only their own, whatever they ask for.
    own = await walk(alice.headers)
    assert sorted(o["id"] for o in own) == sorted(alice_ids)
    assert [o["id"] for o in await walk(bob.headers)] == [bob_id]
    assert [o["id"] for o in await walk(bob.headers, user_id=bob_account.id)] == [bob_id]
    assert (
        await http.get("/v1/orders", params={"user_id": alice_account.id}, headers=bob.headers)
    ).status_code == 403
    for other in alice_ids[:2]:
        assert (await http.get(f"/v1/orders/{other}", headers=bob.headers)).status_code == 404
    assert (await http.get(f"/v1/orders/{bob_id}", headers=staff.headers)).status_code == 200

    # A cursor is bound to its listing and cannot be forged.
    bad = await http.get("/v1/orders", params={"cursor": "not-a-cursor"}, headers=staff.headers)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"product_id": 1, "quantity": 0}]},
        {"items": [{"product_id": 1, "quantity": -1}]},
        {"items": []},
        {"items": [{"product_id": 1, "quantity": 1, "colour": "red"}]},
        {"items": [{"product_id": 1, "quantity": 1}], "coupon": "FREE"},
        {"items": [{"product_id": 0, "quantity": 1}]},
        {"items": [{"product_id": 1}]},
        {"items": [{"product_id": "1", "quantity": 1}]},
        {},
    ],
)
async def test_malformed_bodies_write_nothing(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop, body: dict[str, Any]
) -> None:
    product = await shop.product(stock=5)
    text = json.dumps(body).replace('"product_id": 1', f'"product_id": {product}')
    response = await http.post(
        "/v1/orders",
        content=text,
        headers={
            **shop.buyer.headers,
            "idempotency-key": "bad",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 422, response.text
    assert await orders_of(app, shop.buyer_account.id) == 0
    assert await keys_of(app, shop.buyer_account.id) == 0
    assert await stock_of(app, product) == 5


async def test_unknown_product_is_named(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop
) -> None:
    real = await shop.product(stock=5)
    ghost = 2**62 + secrets.randbelow(1000)
    response = await shop.order(
        "ghost",
        [{"product_id": real, "quantity": 1}, {"product_id": ghost, "quantity": 1}],
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == PROBLEM + "unknown-product"
    assert str(ghost) in response.json()["detail"]
    assert response.json()["errors"] == [
        {"pointer": "/items/1/product_id", "detail": f"no product {ghost}"}
    ]
    assert await stock_of(app, real) == 5
    assert await orders_of(app, shop.buyer_account.id) == 0
    assert await keys_of(app, shop.buyer_account.id) == 0


async def test_deleted_product_cannot_be_ordered(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop
) -> None:
    product = await shop.product(stock=5)
    async with app_container(app).db.connection() as conn:
        await conn.execute("UPDATE products SET deleted_at = now() WHERE id = $1", product)
    response = await shop.order("gone", [{"product_id": product, "quantity": 1}])
    assert response.status_code == 422, response.text
    assert response.json()["type"] == PROBLEM + "unknown-product"
    assert response.json()["errors"][0]["pointer"] == "/items/0/product_id"
    assert await stock_of(app, product) == 5
    assert await orders_of(app, shop.buyer_account.id) == 0


BIGINT_MAX = 2**63 - 1  # orders.total_minor
MAX_PRICE = 10**15  # the catalog's highest price, in minor units
MAX_QUANTITY = 10_000  # the most one line may ask for


@pytest.mark.parametrize(
    ("prices", "quantity"),
    [
        ([MAX_PRICE], MAX_QUANTITY),  # one line: 10^19
        ([BIGINT_MAX // MAX_QUANTITY + 1], MAX_QUANTITY),  # one minor unit past the limit
        ([MAX_PRICE // 10] * 10, MAX_QUANTITY),  # each line fits, their sum does not
    ],
    ids=["one-line", "just-past", "sum-of-lines"],
)
async def test_a_total_too_large_to_store_is_a_422_and_writes_nothing(
    http: httpx.AsyncClient,
    app: HotpathApp,
    shop: Shop,
    prices: list[int],
    quantity: int,
) -> None:
    products = [await shop.product(stock=MAX_QUANTITY, price=p) for p in prices]
    items = [{"product_id": p, "quantity": quantity} for p in products]
    response = await shop.order("huge", items)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == PROBLEM + "order-total-too-large"
    assert problem["errors"] == [{"pointer": "/items", "detail": problem["errors"][0]["detail"]}]
    assert str(BIGINT_MAX) in problem["errors"][0]["detail"]
    assert await orders_of(app, shop.buyer_account.id) == 0
    assert await keys_of(app, shop.buyer_account.id) == 0
    for product in products:
        assert await stock_of(app, product) == MAX_QUANTITY
    events = await fetchval(
        app,
        "SELECT count(*) FROM outbox WHERE topic LIKE 'order.%' AND payload->>'user_id' = $1",
        str(shop.buyer_account.id),
    )
    assert events == 0

    # The largest total that fits is an order like any other.
    fits = await shop.product(stock=MAX_QUANTITY, price=BIGINT_MAX // MAX_QUANTITY)
    placed = await shop.order("largest", [{"product_id": fits, "quantity": MAX_QUANTITY}])
    assert placed.status_code == 201, placed.text
    assert placed.json()["total_minor"] == BIGINT_MAX // MAX_QUANTITY * MAX_QUANTITY
    assert await stock_of(app, fits) == 0
