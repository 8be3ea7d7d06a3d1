"""Placing an order needs a verified email address (HOTPATH_ORDERS_NEED_VERIFIED_EMAIL, on
outside the test environment): an unverified buyer gets a 403 email-not-verified, by session or
API key, nothing is taken and the Idempotency-Key stays free for the order once verified."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from server.app import HotpathApp
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings
from server.users.repository import UsersRepository
from server.web.state import app_container
from tests.fixtures.identity import Accounts
from tests.fixtures.orders import Shop

PROBLEM = "urn:hotpath:problem:"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, orders_need_verified_email=True)


async def verify(app: HotpathApp, user_id: int) -> None:
    async with app_container(app).db.transaction() as conn:
        await UsersRepository(load_queries()).mark_email_verified(conn, user_id)


async def test_an_unverified_buyer_is_refused_and_nothing_is_taken(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop
) -> None:
    product = await shop.product(stock=3)
    items = [{"product_id": product, "quantity": 2}]

    refused = await shop.order("verify-first", items)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["type"] == PROBLEM + "email-not-verified"
    assert "/v1/auth/email/verify/resend" in problem["detail"]
    assert (await http.get(f"/v1/products/{product}")).json()["stock"] == 3

    key = await http.post("/v1/api-keys", json={"name": "shop"}, headers=shop.buyer.headers)
    assert key.status_code == 201, key.text
    by_key = await http.post(
        "/v1/orders",
        json={"items": items},
        headers={"x-api-key": key.json()["key"], "idempotency-key": "by-key"},
    )
    assert by_key.status_code == 403
    assert by_key.json()["type"] == PROBLEM + "email-not-verified"

    # Once the address is verified, the same key places the order (nothing was stored).
    await verify(app, shop.buyer_account.id)
    placed = await shop.order("verify-first", items)
    assert placed.status_code == 201, placed.text
    assert (await http.get(f"/v1/products/{product}")).json()["stock"] == 1


async def test_a_placed_order_replays_whatever_the_address_is_now(
    http: httpx.AsyncClient, app: HotpathApp, shop: Shop
) -> None:
    # The stored answer is looked up before the address is checked (one statement does both):
    # an order placed stays answerable under its key.
    product = await shop.product(stock=3)
    items = [{"product_id": product, "quantity": 1}]
    await verify(app, shop.buyer_account.id)
    placed = await shop.order("placed-once", items)
    assert placed.status_code == 201, placed.text
    async with app_container(app).db.connection() as conn:
        await conn.execute(
            "UPDATE users SET email_verified_at = NULL WHERE id = $1", shop.buyer_account.id
        )
    replay = await shop.order("placed-once", items)
    assert (replay.status_code, replay.content) == (201, placed.content)
    refused = await shop.order("another", items)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == PROBLEM + "email-not-verified"
    assert (await http.get(f"/v1/products/{product}")).json()["stock"] == 2


async def test_the_rest_of_the_api_is_open_to_an_unverified_account(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    # Only orders are gated: reading, the profile, keys and the orders list still answer.
    _, buyer = await accounts.create_and_login("customer")
    assert (await http.get("/v1/users/me", headers=buyer.headers)).json()["email_verified"] is False
    assert (await http.get("/v1/orders", headers=buyer.headers)).status_code == 200
    assert (await http.get("/v1/products")).status_code == 200
    resend = await http.post("/v1/auth/email/verify/resend", headers=buyer.headers)
    assert resend.status_code in (202, 204), resend.text


async def test_the_document_lists_the_403(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    place = document["paths"]["/v1/orders"]["post"]
    assert "403" in place["responses"]
    assert "email-not-verified" in place["description"]
