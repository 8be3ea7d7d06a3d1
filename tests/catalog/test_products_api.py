"""One product over HTTP: reads with strong ETags and public caching, writes with If-Match,
stock that never goes negative, the audit trail and outbox, and the cache across replicas."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.runtime.settings import Settings
from server.web.state import app_container
from tests.fixtures.catalog import Catalog, unique_category, unique_sku
from tests.fixtures.identity import Accounts
from tests.fixtures.support import assert_problem, client_for, lifespan

TOPICS = ("product.created", "product.updated", "product.deleted", "stock.changed")


def new_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": unique_sku(),
        "name": "Kettle",
        "category": unique_category(),
        "price": {"amount_minor": 1999, "currency": "EUR"},
        "stock": 3,
    }
    body.update(overrides)
    return body


async def events(
    db: asyncpg.Connection, product_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The product's audit rows and outbox rows, oldest first (JSON columns decoded)."""
    audit = await db.fetch(
        "SELECT action, outcome, actor_id, target_type, details FROM audit_events"
        " WHERE target_type = 'product' AND target_id = $1 ORDER BY id",
        str(product_id),
    )
    outbox = await db.fetch(
        "SELECT topic, aggregate_type, aggregate_id, payload FROM outbox"
        " WHERE aggregate_type = 'product' AND aggregate_id = $1 ORDER BY id",
        str(product_id),
    )
    return (
        [{**row, "details": json.loads(row["details"])} for row in audit],
        [{**row, "payload": json.loads(row["payload"])} for row in outbox],
    )


# --- reads -------------------------------------------------------------------------------


async def test_get_is_public_with_a_strong_etag(http: httpx.AsyncClient, catalog: Catalog) -> None:
    product = await catalog.create(name="Kettle é", price=1250, currency="GBP", stock=2)

    response = await http.get(f"/v1/products/{product['id']}")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    etag = response.headers["etag"]
    assert etag == f'"p{product["id"]}v1"'
    assert not etag.startswith("W/")
    assert etag == product["etag"]
    cache_control = [part.strip() for part in response.headers["cache-control"].split(",")]
    assert "public" in cache_control
    max_age = [int(part.split("=", 1)[1]) for part in cache_control if part.startswith("max-age=")]
    assert len(max_age) == 1, cache_control
    assert max_age[0] > 0, cache_control
    body = response.json()
    assert body["id"] == product["id"]
    assert body["name"] == "Kettle é"
    assert body["price"] == {"amount_minor": 1250, "currency": "GBP"}
    assert body["stock"] == 2
    assert body["in_stock"] is True
    assert body == {k: v for k, v in product.items() if k != "etag"}


async def test_if_none_match_answers_304_with_the_etag(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    etag = (await http.get(path)).headers["etag"]

    for header in (etag, f'"p0v0", {etag}', f"W/{etag}", "*"):
        response = await http.get(path, headers={"if-none-match": header})
        assert response.status_code == 304, header
        assert response.headers["etag"] == etag
        assert response.content == b""
        assert "public" in response.headers["cache-control"]

    stale = await http.get(path, headers={"if-none-match": f'"p{product["id"]}v0"'})
    assert stale.status_code == 200
    assert stale.json()["id"] == product["id"]


async def test_an_authenticated_read_is_not_stored_by_shared_caches(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    product = await catalog.create()
    response = await http.get(f"/v1/products/{product['id']}", headers=catalog.headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["etag"] == product["etag"]


async def test_unknown_or_malformed_ids_are_404(http: httpx.AsyncClient) -> None:
    for raw in ("999999999999", "abc", "-1", "1.5", "0x10", "99999999999999999999999", "%D9%A1"):
        assert_problem(await http.get(f"/v1/products/{raw}"), 404, "not-found", case=raw)


# --- create ------------------------------------------------------------------------------


async def test_create_answers_201_with_location_and_etag(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    body = new_body(description="Boils water", stock=7)

    response = await http.post("/v1/products", json=body, headers=catalog.headers)

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/v1/products/{created['id']}"
    assert response.headers["etag"] == f'"p{created["id"]}v1"'
    assert created["sku"] == body["sku"]
    assert created["description"] == "Boils water"
    assert created["price"] == body["price"]
    assert created["stock"] == 7
    fetched = await http.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched.headers["etag"] == response.headers["etag"]


async def test_a_duplicate_sku_is_409(http: httpx.AsyncClient, catalog: Catalog) -> None:
    product = await catalog.create()
    again = await http.post(
        "/v1/products", json=new_body(sku=product["sku"]), headers=catalog.headers
    )
    assert_problem(again, 409, "sku-taken")


BAD_BODIES: list[dict[str, Any]] = [
    {"price": {"amount_minor": 19.99, "currency": "EUR"}},
    {"price": {"amount_minor": "1999", "currency": "EUR"}},
    {"price": {"amount_minor": -1, "currency": "EUR"}},
    {"price": {"amount_minor": 1999, "currency": "eur"}},
    {"price": {"amount_minor": 1999, "currency": "EURO"}},
    {"price": {"amount_minor": 1999, "currency": "ABC"}},  # three letters, not a currency
    {"price": {"amount_minor": 1999, "currency": "XAU"}},  # gold: no price is quoted in it
    {"price": {"amount_minor": 1999}},
    {"price": 1999},
    {"stock": -1},
    {"name": ""},
    {"category": "Not A Slug"},
    {"sku": "has space"},
    {"colour": "red"},
]


async def test_a_bad_body_is_422(http: httpx.AsyncClient, catalog: Catalog) -> None:
    for change in BAD_BODIES:
        response = await http.post("/v1/products", json=new_body(**change), headers=catalog.headers)
        assert_problem(response, 422, "validation-failed", case=change)


async def test_a_price_names_an_iso_4217_currency(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    for currency in ("JPY", "CHF", "XOF"):
        body = new_body(price={"amount_minor": 500, "currency": currency})
        response = await http.post("/v1/products", json=body, headers=catalog.headers)
        assert response.status_code == 201, (currency, response.text)
        assert response.json()["price"]["currency"] == currency
    refused = await http.post(
        "/v1/products",
        json=new_body(price={"amount_minor": 500, "currency": "ABC"}),
        headers=catalog.headers,
    )
    assert refused.json()["errors"][0]["pointer"] == "/price/currency"


async def test_a_missing_field_is_422(http: httpx.AsyncClient, catalog: Catalog) -> None:
    body = new_body()
    del body["price"]
    response = await http.post("/v1/products", json=body, headers=catalog.headers)
    assert_problem(response, 422, "validation-failed")


async def test_writes_need_products_write(
    http: httpx.AsyncClient, catalog: Catalog, accounts: Accounts
) -> None:
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    _, customer = await accounts.create_and_login("customer")
    if_match = {"if-match": product["etag"]}

    assert_problem(await http.post("/v1/products", json=new_body(), headers=customer.headers), 403)
    assert_problem(await http.post("/v1/products", json=new_body()), 401)
    patch = {"name": "Teapot"}
    assert_problem(
        await http.patch(path, json=patch, headers={**customer.headers, **if_match}), 403
    )
    assert_problem(await http.patch(path, json=patch, headers=if_match), 401)
    assert_problem(await http.delete(path, headers={**customer.headers, **if_match}), 403)
    assert_problem(await http.delete(path, headers=if_match), 401)
    stock = {"delta": 1, "reason": "recount"}
    assert_problem(await http.post(f"{path}/stock", json=stock, headers=customer.headers), 403)
    assert_problem(await http.post(f"{path}/stock", json=stock), 401)

    # Nothing changed.
    response = await http.get(path)
    assert response.headers["etag"] == product["etag"]
    assert response.json()["stock"] == product["stock"]


async def test_admin_may_write(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    response = await http.post("/v1/products", json=new_body(), headers=admin.headers)
    assert response.status_code == 201, response.text


# --- patch and delete with If-Match ------------------------------------------------------


async def test_patch_needs_the_current_etag(http: httpx.AsyncClient, catalog: Catalog) -> None:
    product = await catalog.create(name="Kettle", price=1000)
    path = f"/v1/products/{product['id']}"
    change = {"name": "Teapot", "price": {"amount_minor": 1500, "currency": "USD"}}

    assert_problem(await http.patch(path, json=change, headers=catalog.headers), 428)
    for stale in (f'"p{product["id"]}v0"', f"W/{product['etag']}", '"p0v1"', '"x"'):
        headers = {**catalog.headers, "if-match": stale}
        assert_problem(await http.patch(path, json=change, headers=headers), 412, case=stale)

    response = await http.patch(
        path, json=change, headers={**catalog.headers, "if-match": product["etag"]}
    )

    assert response.status_code == 200, response.text
    new_etag = response.headers["etag"]
    assert new_etag == f'"p{product["id"]}v2"'
    body = response.json()
    assert body["name"] == "Teapot"
    assert body["price"] == {"amount_minor": 1500, "currency": "USD"}
    assert body["sku"] == product["sku"]
    assert body["category"] == product["category"]
    # The old ETag is stale now.
    again = await http.patch(
        path, json={"name": "Pot"}, headers={**catalog.headers, "if-match": product["etag"]}
    )
    assert_problem(again, 412)
    fetched = await http.get(path)
    assert fetched.headers["etag"] == new_etag
    assert fetched.json()["name"] == "Teapot"


async def test_a_bad_patch_is_422_and_changes_nothing(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    headers = {**catalog.headers, "if-match": product["etag"]}
    for change in (
        {"price": {"amount_minor": 10.5, "currency": "EUR"}},
        {"price": {"amount_minor": 10, "currency": "eur"}},
        {"sku": "other"},
        {"stock": 100},
        {"name": ""},
    ):
        assert_problem(await http.patch(path, json=change, headers=headers), 422, case=change)
    assert (await http.get(path)).headers["etag"] == product["etag"]


async def test_if_match_with_a_list_succeeds_when_any_tag_is_current(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    # RFC 9110 13.1.1: "If-Match: a, b" is true when any listed tag matches the current one.
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    if_match = f'"p{product["id"]}v0", {product["etag"]}'
    response = await http.patch(
        path, json={"name": "Teapot"}, headers={**catalog.headers, "if-match": if_match}
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"p{product["id"]}v2"'


async def test_if_match_star_matches_whatever_version_is_current(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    # RFC 9110 13.1.1: "If-Match: *" is true when the resource has a current representation.
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    star = {**catalog.headers, "if-match": "*"}
    in_a_list = {**catalog.headers, "if-match": '"p0v0", *'}  # "*" stands alone or not at all
    assert_problem(await http.patch(path, json={"name": "Pot"}, headers=in_a_list), 412)

    patched = await http.patch(path, json={"name": "Teapot"}, headers=star)

    assert patched.status_code == 200, patched.text
    assert patched.headers["etag"] == f'"p{product["id"]}v2"'
    assert (await http.delete(path, headers=star)).status_code == 204
    # Gone: preconditions are ignored when the request would fail without them (RFC 9110
    # 13.2.1), so "*" on a missing product is the 404 any tag gets; If-None-Match: * is true
    # when there is none, so a read goes on to its 404.
    assert_problem(await http.patch(path, json={"name": "Pot"}, headers=star), 404)
    assert_problem(await http.delete(path, headers=star), 404)
    assert_problem(await http.get(path, headers={"if-none-match": "*"}), 404)


async def test_patch_of_an_unknown_product_is_404(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    headers = {**catalog.headers, "if-match": '"p999999999v1"'}
    response = await http.patch("/v1/products/999999999", json={"name": "x"}, headers=headers)
    assert_problem(response, 404)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_an_id_that_cannot_exist_is_404_before_the_etag_is_read(
    http: httpx.AsyncClient, catalog: Catalog, method: str
) -> None:
    # Ids are serials from 1 (the OpenAPI document says minimum 1): /v1/products/0 names
    # nothing, whatever If-Match says (schemathesis' ST201 found a 412 for it).
    for etag in ("a:h`0qX`3", '"p0v1"'):
        headers = {**catalog.headers, "if-match": etag}
        response = await http.request(method, "/v1/products/0", json={"name": "x"}, headers=headers)
        assert_problem(response, 404)


async def test_delete_is_soft_and_needs_the_current_etag(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    category = unique_category()
    product = await catalog.create(category=category)
    other = await catalog.create(category=category)
    path = f"/v1/products/{product['id']}"
    assert (await http.get(path)).status_code == 200  # cached before the delete

    assert_problem(await http.delete(path, headers=catalog.headers), 428)
    stale = {**catalog.headers, "if-match": f'"p{product["id"]}v0"'}
    assert_problem(await http.delete(path, headers=stale), 412)
    current = {**catalog.headers, "if-match": product["etag"]}

    response = await http.delete(path, headers=current)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_problem(await http.get(path), 404)
    listing = await http.get("/v1/products", params={"category": category})
    assert [p["id"] for p in listing.json()["data"]] == [other["id"]]
    for sort in ("price", "name"):
        for order in ("asc", "desc"):
            params = {"category": category, "sort": sort, "order": order, "currency": "EUR"}
            listed = await http.get("/v1/products", params=params)
            assert [p["id"] for p in listed.json()["data"]] == [other["id"]]
    assert_problem(await http.delete(path, headers=current), 404)
    assert_problem(await http.patch(path, json={"name": "x"}, headers=current), 404)
    stock = await http.post(
        f"{path}/stock", json={"delta": 1, "reason": "found"}, headers=catalog.headers
    )
    assert_problem(stock, 404)
    # Soft: the row is still there, marked deleted.
    deleted_at = await db.fetchval("SELECT deleted_at FROM products WHERE id = $1", product["id"])
    assert deleted_at is not None


# --- stock -------------------------------------------------------------------------------


async def test_stock_changes_and_never_goes_negative(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    product = await catalog.create(stock=2)
    path = f"/v1/products/{product['id']}/stock"

    up = await http.post(path, json={"delta": 3, "reason": "delivery"}, headers=catalog.headers)
    assert up.status_code == 200, up.text
    assert up.json()["stock"] == 5
    assert up.headers["etag"] == f'"p{product["id"]}v2"'

    too_many = await http.post(path, json={"delta": -6, "reason": "sale"}, headers=catalog.headers)
    assert_problem(too_many, 409, "insufficient-stock")
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", product["id"]) == 5

    down = await http.post(path, json={"delta": -5, "reason": "sale"}, headers=catalog.headers)
    assert down.status_code == 200, down.text
    assert down.json()["stock"] == 0
    assert down.json()["in_stock"] is False
    fetched = await http.get(f"/v1/products/{product['id']}")
    assert fetched.json()["stock"] == 0
    assert fetched.headers["etag"] == down.headers["etag"]

    empty = await http.post(path, json={"delta": -1, "reason": "sale"}, headers=catalog.headers)
    assert_problem(empty, 409, "insufficient-stock")
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", product["id"]) == 0


async def test_a_bad_stock_body_is_422(http: httpx.AsyncClient, catalog: Catalog) -> None:
    product = await catalog.create()
    path = f"/v1/products/{product['id']}/stock"
    for body in (
        {"delta": 1},
        {"reason": "x"},
        {"delta": 1.5, "reason": "x"},
        {"delta": "1", "reason": "x"},
        {"delta": 1, "reason": ""},
        {"delta": 1, "reason": "x", "extra": True},
        {"delta": 0, "reason": "x"},
    ):
        response = await http.post(path, json=body, headers=catalog.headers)
        assert_problem(response, 422, "validation-failed", case=body)
    assert (await http.get(f"/v1/products/{product['id']}")).headers["etag"] == product["etag"]


async def test_stock_beyond_the_column_range_is_a_client_error_not_a_500(
    served: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    # Each delta is within the schema's bound (10**9), but the sum overflows stock's integer.
    product = await catalog.create(stock=10**9)
    path = f"/v1/products/{product['id']}/stock"
    body = {"delta": 10**9, "reason": "delivery"}
    first = await served.post(path, json=body, headers=catalog.headers)
    assert first.status_code == 200, first.text
    second = await served.post(path, json=body, headers=catalog.headers)
    assert second.status_code in (409, 422), second.text
    assert_problem(second, second.status_code)
    stock = await db.fetchval("SELECT stock FROM products WHERE id = $1", product["id"])
    assert stock == 2 * 10**9


async def test_a_nul_character_in_the_body_is_422_not_a_500(
    served: httpx.AsyncClient, catalog: Catalog
) -> None:
    # PostgreSQL text cannot hold U+0000: the API must refuse it, not fail on the INSERT.
    for change in ({"name": "Ket\u0000tle"}, {"description": "nul\u0000"}):
        response = await served.post(
            "/v1/products", json=new_body(**change), headers=catalog.headers
        )
        assert_problem(response, 422, "validation-failed", case=change)
    product = await catalog.create()
    response = await served.post(
        f"/v1/products/{product['id']}/stock",
        json={"delta": 1, "reason": "nul\u0000"},
        headers=catalog.headers,
    )
    assert_problem(response, 422, "validation-failed")


async def test_concurrent_sales_never_oversell(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    product = await catalog.create(stock=3)
    path = f"/v1/products/{product['id']}/stock"

    responses = await asyncio.gather(
        *(
            http.post(path, json={"delta": -1, "reason": "sale"}, headers=catalog.headers)
            for _ in range(8)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [409] * 5, [r.text for r in responses]
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", product["id"]) == 0
    _, outbox = await events(db, product["id"])
    assert [row["topic"] for row in outbox].count("stock.changed") == 3


# --- two writers -------------------------------------------------------------------------


async def test_two_writers_with_the_same_etag_one_wins(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    etag = product["etag"]
    for round_ in range(5):
        headers = {**catalog.headers, "if-match": etag}
        first, second = await asyncio.gather(
            http.patch(path, json={"name": f"First {round_}"}, headers=headers),
            http.patch(path, json={"name": f"Second {round_}"}, headers=headers),
        )
        assert sorted([first.status_code, second.status_code]) == [200, 412], (
            first.text,
            second.text,
        )
        winner = first if first.status_code == 200 else second
        etag = winner.headers["etag"]
        current = await http.get(path)
        assert current.headers["etag"] == etag
        assert current.json()["name"] == winner.json()["name"]
    audit, outbox = await events(db, product["id"])
    assert [row["topic"] for row in outbox].count("product.updated") == 5
    assert [row["action"] for row in audit].count("product.updated") == 5


# --- audit and outbox --------------------------------------------------------------------


async def test_every_change_is_audited_and_sent_to_the_outbox(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    product = await catalog.create(stock=1)
    pid = product["id"]
    path = f"/v1/products/{pid}"
    staff = catalog.headers

    patched = await http.patch(
        path, json={"name": "Teapot"}, headers={**staff, "if-match": product["etag"]}
    )
    assert patched.status_code == 200
    stocked = await http.post(f"{path}/stock", json={"delta": 4, "reason": "x"}, headers=staff)
    assert stocked.status_code == 200
    deleted = await http.delete(path, headers={**staff, "if-match": stocked.headers["etag"]})
    assert deleted.status_code == 204

    audit, outbox = await events(db, pid)
    expected = [
        ("product.created", 1),
        ("product.updated", 2),
        ("stock.changed", 3),
        ("product.deleted", 4),
    ]
    assert [(row["action"], row["details"]["version"]) for row in audit] == expected
    assert {row["outcome"] for row in audit} == {"success"}
    assert {row["actor_id"] for row in audit} == {catalog.account.id}
    assert [(row["topic"], row["payload"]["version"]) for row in outbox] == expected
    assert {row["payload"]["id"] for row in outbox} == {pid}
    assert {row["topic"] for row in outbox} <= set(TOPICS)
    assert outbox[2]["payload"]["stock"] == 5
    assert outbox[2]["payload"]["delta"] == 4


async def test_a_failed_write_leaves_no_audit_or_outbox_row(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    product = await catalog.create(stock=1)
    pid = product["id"]
    path = f"/v1/products/{pid}"
    staff = catalog.headers
    stale = {**staff, "if-match": f'"p{pid}v0"'}
    before = await events(db, pid)
    outbox_total = await db.fetchval("SELECT count(*) FROM outbox")

    assert_problem(await http.patch(path, json={"name": "x"}, headers=stale), 412)
    assert_problem(await http.patch(path, json={"name": "x"}, headers=staff), 428)
    assert_problem(await http.delete(path, headers=stale), 412)
    sale = await http.post(f"{path}/stock", json={"delta": -2, "reason": "x"}, headers=staff)
    assert_problem(sale, 409)
    duplicate = await http.post("/v1/products", json=new_body(sku=product["sku"]), headers=staff)
    assert_problem(duplicate, 409)

    assert await events(db, pid) == before
    # The duplicate SKU wrote no event for any product either.
    assert await db.fetchval("SELECT count(*) FROM outbox") == outbox_total


# --- the cache ---------------------------------------------------------------------------


async def test_a_write_is_visible_at_once_on_the_same_app(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    product = await catalog.create(stock=1)
    path = f"/v1/products/{product['id']}"
    for _ in range(3):  # warm: local and Redis
        assert (await http.get(path)).headers["etag"] == product["etag"]

    patched = await http.patch(
        path, json={"name": "Teapot"}, headers={**catalog.headers, "if-match": product["etag"]}
    )
    fetched = await http.get(path)
    assert fetched.headers["etag"] == patched.headers["etag"]
    assert fetched.json()["name"] == "Teapot"

    stocked = await http.post(
        f"{path}/stock", json={"delta": 2, "reason": "x"}, headers=catalog.headers
    )
    fetched = await http.get(path)
    assert fetched.headers["etag"] == stocked.headers["etag"]
    assert fetched.json()["stock"] == 3
    not_modified = await http.get(path, headers={"if-none-match": patched.headers["etag"]})
    assert not_modified.status_code == 200  # the old tag no longer matches

    deleted = await http.delete(
        path, headers={**catalog.headers, "if-match": stocked.headers["etag"]}
    )
    assert deleted.status_code == 204
    assert_problem(await http.get(path), 404)


async def test_a_not_found_read_does_not_hide_a_new_product(
    http: httpx.AsyncClient, catalog: Catalog, db: asyncpg.Connection
) -> None:
    next_id = await db.fetchval("SELECT coalesce(max(id), 0) + 1 FROM products")
    # Reads of ids just past the end, then a create that may take one of them.
    for offset in range(3):
        assert (await http.get(f"/v1/products/{next_id + offset}")).status_code == 404
    product = await catalog.create()
    assert (await http.get(f"/v1/products/{product['id']}")).status_code == 200


@pytest.fixture
async def replica(
    settings: Settings, logger: FilteringBoundLogger
) -> AsyncIterator[tuple[HotpathApp, httpx.AsyncClient]]:
    """A second app instance (another replica) on the same database and Redis."""
    second = create_app(settings, logger=logger)
    async with lifespan(second), client_for(second) as client:
        yield second, client


async def until_subscribed(app: HotpathApp) -> None:
    cache = app_container(app).catalog.cache
    deadline = time.monotonic() + 5
    while not cache.subscribed:
        assert time.monotonic() < deadline, "the replica never subscribed to invalidations"
        await asyncio.sleep(0.01)


async def test_another_replica_sees_a_write_within_a_second(
    app: HotpathApp,
    http: httpx.AsyncClient,
    catalog: Catalog,
    replica: tuple[HotpathApp, httpx.AsyncClient],
) -> None:
    second_app, second = replica
    await until_subscribed(app)
    await until_subscribed(second_app)
    product = await catalog.create(name="Kettle")
    path = f"/v1/products/{product['id']}"
    for _ in range(2):  # the replica caches version 1
        old = await second.get(path)
        assert old.headers["etag"] == product["etag"]

    patched = await http.patch(
        path, json={"name": "Teapot"}, headers={**catalog.headers, "if-match": product["etag"]}
    )
    assert patched.status_code == 200
    started = time.monotonic()
    while True:
        seen = await second.get(path)
        if seen.headers["etag"] == patched.headers["etag"]:
            break
        assert time.monotonic() - started < 1.0, "the replica still serves the old version"
        await asyncio.sleep(0.02)
    assert seen.json()["name"] == "Teapot"

    # And the other way round: a delete on the replica reaches the first app.
    assert (await http.get(path)).status_code == 200
    deleted = await second.delete(
        path, headers={**catalog.headers, "if-match": patched.headers["etag"]}
    )
    assert deleted.status_code == 204
    started = time.monotonic()
    while (await http.get(path)).status_code != 404:
        assert time.monotonic() - started < 1.0, "the first app still serves a deleted product"
        await asyncio.sleep(0.02)


_SAMPLE = re.compile(
    r'^hotpath_cache_requests_total\{cache="product",result="(?P<result>\w+)"\} (?P<value>\S+)$',
    re.MULTILINE,
)


async def cache_counters(http: httpx.AsyncClient) -> dict[str, float]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return {m["result"]: float(m["value"]) for m in _SAMPLE.finditer(response.text)}


async def test_cache_counters_are_exported(
    app: HotpathApp, http: httpx.AsyncClient, catalog: Catalog
) -> None:
    await until_subscribed(app)
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    before = await cache_counters(http)
    assert set(before) == {"local_hit", "redis_hit", "miss"}, before

    for _ in range(5):
        assert (await http.get(path)).status_code == 200

    after = await cache_counters(http)
    # Every read is counted once, by the layer that answered it.
    assert sum(after.values()) == sum(before.values()) + 5, (before, after)
    assert after["miss"] + after["redis_hit"] > before["miss"] + before["redis_hit"]
    assert after["local_hit"] >= before["local_hit"] + 1, (before, after)
