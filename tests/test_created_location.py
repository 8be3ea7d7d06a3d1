"""Every 201 names what it created in `Location`, and a GET of that path reads it back (where
the resource has a GET); the OpenAPI document says so for every 201."""

from __future__ import annotations

import secrets

import httpx
import orjson

from server.app import HotpathApp
from tests.fixtures.identity import Accounts
from tests.fixtures.orders import Shop


async def test_an_order_and_its_replay_carry_the_orders_location(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    product = await shop.product(stock=5)
    items = [{"product_id": product, "quantity": 1}]
    placed = await shop.order("loc-1", items)
    assert placed.status_code == 201, placed.text
    assert placed.headers["location"] == f"/v1/orders/{placed.json()['id']}"
    replay = await shop.order("loc-1", items)
    assert replay.headers["location"] == placed.headers["location"]
    read = await http.get(placed.headers["location"], headers=shop.buyer.headers)
    assert read.json() == placed.json()


async def test_an_api_key_carries_its_location(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, tokens = await accounts.create_and_login("customer")
    created = await http.post("/v1/api-keys", json={"name": "ci"}, headers=tokens.headers)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/api-keys/{created.json()['id']}"
    read = await http.get(created.headers["location"], headers=tokens.headers)
    assert read.status_code == 200
    assert read.json()["id"] == created.json()["id"]


async def test_a_product_and_a_role_carry_their_location(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    product = await http.post(
        "/v1/products",
        json={
            "sku": f"loc-{secrets.token_hex(5)}",
            "name": "Located",
            "category": "tools",
            "price": {"amount_minor": 100, "currency": "EUR"},
        },
        headers=admin.headers,
    )
    assert product.headers["location"] == f"/v1/products/{product.json()['id']}"
    name = f"role-{secrets.token_hex(4)}"
    role = await http.post(
        "/v1/roles", json={"name": name, "permissions": ["users:read"]}, headers=admin.headers
    )
    assert role.status_code == 201, role.text
    assert role.headers["location"] == f"/v1/roles/{name}"
    read = await http.get(role.headers["location"], headers=admin.headers)
    assert read.status_code == 200, read.text
    assert read.json() == role.json()
    missing = await http.get(f"/v1/roles/{name}-gone", headers=admin.headers)
    assert missing.status_code == 404


async def test_the_document_gives_every_201_a_location_header(app: HotpathApp) -> None:
    document = orjson.loads(app.state.openapi_document())
    created = [
        (path, method, op["responses"]["201"])
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if "201" in op["responses"]
    ]
    assert {(p, m) for p, m, _ in created} >= {
        ("/v1/orders", "post"),
        ("/v1/api-keys", "post"),
        ("/v1/products", "post"),
        ("/v1/roles", "post"),
        ("/v1/webhooks", "post"),
    }
    for path, method, response in created:
        assert "Location" in response.get("headers", {}), (path, method)
