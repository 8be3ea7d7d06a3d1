"""The ceilings of bench/ceilings/ answer what hotpath answers, byte for byte where the
request determines it, and on the same SQL: a ceiling that drifted from the endpoint it
bounds would make every ratio in `make bench` meaningless."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest

from bench.ceilings import list_page, order_place, pk_lookup
from server.runtime.settings import Settings
from server.web.pagination import CursorCodec
from tests.fixtures.catalog import Catalog
from tests.fixtures.identity import Accounts
from tests.fixtures.support import client_for, lifespan

CEILINGS = {"pk": pk_lookup, "list": list_page, "order": order_place}


@pytest.fixture(params=["hotpath", "asyncpg"])
async def ceilings(
    request: pytest.FixtureRequest,
    migrated_db: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Each ceiling app on the test database, on one of the two pools it can use."""
    monkeypatch.setenv("CEILING_DATABASE_URL", migrated_db)
    monkeypatch.setenv("CEILING_POOL", request.param)
    # Cursors signed with the app's key, as make bench gives both the same HOTPATH_SECRET_KEY.
    monkeypatch.setattr(list_page, "_cursors", CursorCodec(settings.secret_key))
    async with AsyncExitStack() as stack:
        clients = {}
        for name, module in CEILINGS.items():
            await stack.enter_async_context(lifespan(module.app))
            clients[name] = await stack.enter_async_context(client_for(module.app))
        yield clients


async def test_the_pk_ceiling_writes_hotpaths_product_bytes(
    http: httpx.AsyncClient, catalog: Catalog, ceilings: dict[str, httpx.AsyncClient]
) -> None:
    product = await catalog.create(name="Ceiling lamp", stock=3)
    ours = await http.get(f"/v1/products/{product['id']}")
    theirs = await ceilings["pk"].get(f"/v1/products/{product['id']}")
    assert ours.status_code == theirs.status_code == 200
    assert theirs.content == ours.content
    assert (await ceilings["pk"].get("/v1/products/0")).status_code == 404


async def test_the_list_ceiling_pages_like_hotpath_and_takes_its_cursors(
    http: httpx.AsyncClient, catalog: Catalog, ceilings: dict[str, httpx.AsyncClient]
) -> None:
    for _ in range(5):
        await catalog.create()
    path = "/v1/products?limit=2"
    for _ in range(2):  # the first page, then one behind hotpath's own cursor
        ours = await http.get(path)
        theirs = await ceilings["list"].get(path)
        assert ours.status_code == theirs.status_code == 200
        assert theirs.content == ours.content, path
        assert theirs.headers.get("link") == ours.headers.get("link")
        cursor = ours.json()["next_cursor"]
        assert cursor is not None
        path = f"/v1/products?limit=2&cursor={cursor}"


def _shape(order: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in order.items() if k not in ("id", "created_at", "updated_at")}


async def _effects(db: asyncpg.Connection, order_id: int) -> dict[str, Any]:
    topics = await db.fetch(
        "SELECT topic, aggregate_type FROM outbox WHERE (topic = 'order.placed' AND"
        " aggregate_id = $1) OR (topic = 'stock.changed' AND payload->>'order_id' = $1)"
        " ORDER BY topic, aggregate_id",
        str(order_id),
    )
    # The stored answer is this order (bytea::text is hex: its digits are not the id's).
    keys = await db.fetchval(
        "SELECT count(*) FROM idempotency_keys k JOIN orders o ON o.user_id = k.user_id"
        " WHERE o.id = $1 AND (convert_from(k.response_body, 'UTF8')::jsonb ->> 'id') = $1::text",
        order_id,
    )
    return {"events": [tuple(r) for r in topics], "stored_answers": keys}


async def test_the_order_ceiling_runs_hotpaths_transaction(
    http: httpx.AsyncClient,
    catalog: Catalog,
    accounts: Accounts,
    db: asyncpg.Connection,
    ceilings: dict[str, httpx.AsyncClient],
) -> None:
    first = await catalog.create(price=250, stock=10)
    second = await catalog.create(price=1000, stock=10)
    _, buyer = await accounts.create_and_login()
    body = {
        "items": [
            {"product_id": second["id"], "quantity": 2},
            {"product_id": first["id"], "quantity": 1},
        ]
    }
    answers = []
    for client in (http, ceilings["order"]):
        headers = {**buyer.headers, "idempotency-key": secrets.token_hex(16)}
        answer = await client.post("/v1/orders", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        assert answer.headers["location"] == f"/v1/orders/{answer.json()['id']}"
        answers.append(answer.json())
    ours, theirs = answers
    assert _shape(theirs) == _shape(ours)
    assert list(theirs) == list(ours)  # the same fields in the same order
    assert await _effects(db, theirs["id"]) == await _effects(db, ours["id"])
    stock = await db.fetch(
        "SELECT stock FROM products WHERE id = ANY($1::bigint[]) ORDER BY id",
        [first["id"], second["id"]],
    )
    assert [r["stock"] for r in stock] == [8, 6]  # both orders took their stock
