"""The FastAPI peer app answers like the template it copies, against the real schema."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import jwt
import pytest

from bench.peers import fastapi_template
from tests.fixtures.support import client_for, lifespan

SECRET = "peer-test-secret-" + "x" * 32


@dataclass(frozen=True, slots=True)
class Rows:
    active_user: int
    disabled_user: int
    product: asyncpg.Record
    deleted_product: int


def token_for(sub: str, *, secret: str = SECRET, expires_in: int = 300) -> str:
    exp = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
    return jwt.encode({"sub": sub, "exp": exp}, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def insert_user(conn: asyncpg.Connection, status: str) -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (email, password_hash, status) VALUES ($1, 'x', $2) RETURNING id",
        f"peer-{secrets.token_hex(6)}@example.com",
        status,
    )
    return user_id


async def insert_product(conn: asyncpg.Connection, *, deleted: bool) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO products (sku, name, description, category, price_minor, currency, stock,"
        " deleted_at) VALUES ($1, 'Peer lamp', 'A lamp', 'lighting', 1999, 'EUR', 7,"
        " CASE WHEN $2 THEN now() END) RETURNING *",
        f"PEER-{secrets.token_hex(6)}",
        deleted,
    )
    assert row is not None
    return row


@pytest.fixture
async def rows(migrated_db: str) -> AsyncIterator[Rows]:
    conn = await asyncpg.connect(migrated_db)
    try:
        yield Rows(
            active_user=await insert_user(conn, "active"),
            disabled_user=await insert_user(conn, "disabled"),
            product=await insert_product(conn, deleted=False),
            deleted_product=(await insert_product(conn, deleted=True))["id"],
        )
    finally:
        await conn.close()


@pytest.fixture
async def peer(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    app = fastapi_template.create_app(migrated_db, SECRET, pool_size=2)
    async with lifespan(app), client_for(app) as http:
        yield http


async def test_livez(peer: httpx.AsyncClient) -> None:
    response = await peer.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_product_for_an_active_user(peer: httpx.AsyncClient, rows: Rows) -> None:
    product = rows.product
    response = await peer.get(
        f"/v1/products/{product['id']}", headers=bearer(token_for(str(rows.active_user)))
    )
    assert response.status_code == 200
    body = response.json()
    created_at = dt.datetime.fromisoformat(body.pop("created_at"))
    updated_at = dt.datetime.fromisoformat(body.pop("updated_at"))
    assert (created_at, updated_at) == (product["created_at"], product["updated_at"])
    assert body == {
        "id": product["id"],
        "sku": product["sku"],
        "name": "Peer lamp",
        "description": "A lamp",
        "category": "lighting",
        "price": {"amount_minor": 1999, "currency": "EUR"},
        "stock": 7,
        "version": 1,
    }


async def test_missing_token_is_401(peer: httpx.AsyncClient, rows: Rows) -> None:
    response = await peer.get(f"/v1/products/{rows.product['id']}")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param(token_for("1", secret="another-secret-" + "y" * 32), id="wrong-secret"),
        pytest.param(token_for("1", expires_in=-60), id="expired"),
        pytest.param(token_for("alice"), id="non-numeric-sub"),
    ],
)
async def test_bad_token_is_403(peer: httpx.AsyncClient, rows: Rows, token: str) -> None:
    response = await peer.get(f"/v1/products/{rows.product['id']}", headers=bearer(token))
    assert response.status_code == 403


async def test_unknown_user_is_404_as_in_the_template(peer: httpx.AsyncClient, rows: Rows) -> None:
    response = await peer.get(
        f"/v1/products/{rows.product['id']}", headers=bearer(token_for(str(2**62)))
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "User not found"}


async def test_disabled_user_is_400(peer: httpx.AsyncClient, rows: Rows) -> None:
    response = await peer.get(
        f"/v1/products/{rows.product['id']}", headers=bearer(token_for(str(rows.disabled_user)))
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Inactive user"}


async def test_unknown_and_deleted_products_are_404(peer: httpx.AsyncClient, rows: Rows) -> None:
    headers = bearer(token_for(str(rows.active_user)))
    for product_id in (2**62, rows.deleted_product):
        response = await peer.get(f"/v1/products/{product_id}", headers=headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "Product not found"}


async def test_module_app_is_built_from_the_environment(
    migrated_db: str, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEER_DATABASE_URL", migrated_db)
    monkeypatch.setenv("PEER_JWT_SECRET", SECRET)
    monkeypatch.setenv("PEER_POOL_SIZE", "1")
    fastapi_template.create_app_from_env.cache_clear()
    try:
        app = fastapi_template.app
        assert app is fastapi_template.app
        async with lifespan(app), client_for(app) as http:
            response = await http.get(
                f"/v1/products/{rows.product['id']}",
                headers=bearer(token_for(str(rows.active_user))),
            )
        assert response.status_code == 200
        assert response.json()["sku"] == rows.product["sku"]
    finally:
        fastapi_template.create_app_from_env.cache_clear()
