"""The order flow end to end through HTTP: place, replay, conflict, cancel, fulfil."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from server.app import HotpathApp
from server.runtime.settings import Settings
from server.web.state import app_container
from tests.fixtures.identity import Accounts
from tests.fixtures.orders import Shop, new_product, order


async def test_place_replay_and_reuse(http: httpx.AsyncClient, shop: Shop) -> None:
    product = await shop.product(stock=5, price=250)
    items = [{"product_id": product, "quantity": 2}]
    first = await shop.order("k-1", items)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["status"], body["total_minor"], body["currency"]) == ("placed", 500, "EUR")
    replay = await shop.order("k-1", items)
    assert replay.status_code == 201
    assert replay.content == first.content
    other = await shop.order("k-1", [{"product_id": product, "quantity": 1}])
    assert other.status_code == 422
    stock = (await http.get(f"/v1/products/{product}")).json()["stock"]
    assert stock == 3
    missing_key = await http.post("/v1/orders", json={"items": items}, headers=shop.buyer.headers)
    assert missing_key.status_code == 400


async def test_all_or_nothing_and_the_items_named(http: httpx.AsyncClient, shop: Shop) -> None:
    plenty = await shop.product(stock=10)
    scarce = await shop.product(stock=1)
    response = await shop.order(
        "k-2",
        [{"product_id": plenty, "quantity": 3}, {"product_id": scarce, "quantity": 2}],
    )
    assert response.status_code == 409
    assert response.json()["type"] == "urn:hotpath:problem:out-of-stock"
    # How many of each short item there are, so the client can offer what is left.
    assert response.json()["items"] == [{"product_id": scarce, "requested": 2, "available": 1}]
    assert (await http.get(f"/v1/products/{plenty}")).json()["stock"] == 10


async def test_a_product_that_does_not_exist_is_a_422_naming_it_not_out_of_stock(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    plenty = await shop.product(stock=10)
    scarce = await shop.product(stock=1)
    gone = await shop.product(stock=10)
    etag = (await http.get(f"/v1/products/{gone}")).headers["etag"]
    deleted = await http.delete(
        f"/v1/products/{gone}", headers={**shop.staff.headers, "if-match": etag}
    )
    assert deleted.status_code == 204
    never = 2**62
    items = [
        {"product_id": plenty, "quantity": 1},
        {"product_id": never, "quantity": 1},
        {"product_id": scarce, "quantity": 5},
        {"product_id": gone, "quantity": 1},
    ]
    response = await shop.order("k-unknown", items)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:hotpath:problem:unknown-product"
    assert str(never) in problem["detail"]
    assert str(gone) in problem["detail"]
    assert sorted(e["pointer"] for e in problem["errors"]) == [
        "/items/1/product_id",
        "/items/3/product_id",
    ]
    # Nothing was taken, and the key was not spent: the corrected order goes through.
    assert (await http.get(f"/v1/products/{plenty}")).json()["stock"] == 10
    fixed = await shop.order("k-unknown", [{"product_id": plenty, "quantity": 1}])
    assert fixed.status_code == 201, fixed.text


async def test_the_document_describes_the_short_items_of_a_409(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/openapi.json")).json()
    conflict = document["paths"]["/v1/orders"]["post"]["responses"]["409"]
    schema = conflict["content"]["application/problem+json"]["schema"]
    assert {"$ref": "#/components/schemas/Problem"} in schema["allOf"]
    assert {"$ref": "#/components/schemas/OrderConflict"} in schema["allOf"]
    short = document["components"]["schemas"]["ShortItem"]
    assert set(short["required"]) == {"product_id", "requested", "available"}


async def test_concurrent_orders_never_oversell(http: httpx.AsyncClient, shop: Shop) -> None:
    product = await shop.product(stock=10)
    responses = await asyncio.gather(
        *(shop.order(f"c-{n}", [{"product_id": product, "quantity": 1}]) for n in range(40))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 10
    assert statuses.count(409) == 30
    assert (await http.get(f"/v1/products/{product}")).json()["stock"] == 0


async def test_one_key_under_concurrency_makes_one_order(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    product = await shop.product(stock=100)
    items = [{"product_id": product, "quantity": 1}]
    responses = await asyncio.gather(*(shop.order("same", items) for _ in range(20)))
    created = [r for r in responses if r.status_code == 201]
    assert created
    assert {r.content for r in created} == {created[0].content}
    assert all(r.status_code in (201, 409) for r in responses)
    assert (await http.get(f"/v1/products/{product}")).json()["stock"] == 99


async def test_state_machine_and_isolation(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, staff = await accounts.create_and_login("staff")
    _, alice = await accounts.create_and_login("customer")
    _, bob = await accounts.create_and_login("customer")
    product = await new_product(http, staff, stock=5)
    placed = (await order(http, alice, "s-1", [{"product_id": product, "quantity": 2}])).json()
    order_id = placed["id"]
    assert (await http.get(f"/v1/orders/{order_id}", headers=bob.headers)).status_code == 404
    assert (
        await http.post(f"/v1/orders/{order_id}/cancel", headers=bob.headers)
    ).status_code == 404
    assert (await http.get("/v1/orders", headers=bob.headers)).json()["data"] == []
    mine = (await http.get("/v1/orders", headers=alice.headers)).json()["data"]
    assert [o["id"] for o in mine] == [order_id]
    cancelled = await http.post(f"/v1/orders/{order_id}/cancel", headers=alice.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert (await http.get(f"/v1/products/{product}")).json()["stock"] == 5
    again = await http.post(f"/v1/orders/{order_id}/fulfil", headers=staff.headers)
    assert again.status_code == 409
    second = (await order(http, alice, "s-2", [{"product_id": product, "quantity": 1}])).json()
    assert (
        await http.post(f"/v1/orders/{second['id']}/fulfil", headers=alice.headers)
    ).status_code == 403
    done = await http.post(f"/v1/orders/{second['id']}/fulfil", headers=staff.headers)
    assert done.json()["status"] == "fulfilled"
    late = await http.post(f"/v1/orders/{second['id']}/cancel", headers=alice.headers)
    assert late.status_code == 409
    staff_view = await http.get(
        "/v1/orders", params={"user_id": placed["user_id"]}, headers=staff.headers
    )
    assert len(staff_view.json()["data"]) == 2
    nosy = await http.get("/v1/orders", params={"user_id": placed["user_id"]}, headers=bob.headers)
    assert nosy.status_code == 403


async def test_housekeeping_forgets_expired_idempotency_keys(
    http: httpx.AsyncClient, accounts: Accounts, app: HotpathApp, settings: Settings
) -> None:
    _, staff = await accounts.create_and_login("staff")
    account, buyer = await accounts.create_and_login("customer")
    product = await new_product(http, staff, stock=5)
    assert (
        await order(http, buyer, "old", [{"product_id": product, "quantity": 1}])
    ).status_code == 201
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
            " WHERE user_id = $1",
            account.id,
        )
        await app_container(app).orders.housekeeping()
        left = await conn.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE user_id = $1", account.id
        )
    finally:
        await conn.close()
    assert left == 0
