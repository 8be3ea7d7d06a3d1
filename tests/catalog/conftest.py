"""Fixtures for the catalog tests over HTTP: the identity fixtures (an app with cheap argon2,
its ``http`` client with the lifespan running, ``accounts``), a direct database connection, and
a ``catalog`` helper that creates products as a staff member."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.app import HotpathApp
from tests.identity.conftest import Account, Accounts, Tokens, accounts, app, db, http, settings
from tests.support import assert_problem, client_for

__all__ = [
    "Catalog",
    "accounts",
    "app",
    "assert_problem",
    "catalog",
    "db",
    "http",
    "served",
    "settings",
]


def unique_category() -> str:
    return f"cat-{secrets.token_hex(6)}"


def unique_sku() -> str:
    return f"SKU-{secrets.token_hex(8)}"


class Catalog:
    """Creates products through the API as a staff member."""

    def __init__(self, http: httpx.AsyncClient, account: Account, staff: Tokens) -> None:
        self.http = http
        self.account = account
        self.staff = staff

    @property
    def headers(self) -> dict[str, str]:
        return self.staff.headers

    async def create(
        self,
        *,
        category: str | None = None,
        name: str = "Kettle",
        price: int = 1999,
        currency: str = "EUR",
        stock: int = 5,
        sku: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "sku": sku or unique_sku(),
            "name": name,
            "category": category or unique_category(),
            "price": {"amount_minor": price, "currency": currency},
            "stock": stock,
        }
        response = await self.http.post("/v1/products", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        product: dict[str, Any] = response.json()
        product["etag"] = response.headers["etag"]
        return product


@pytest.fixture
async def catalog(http: httpx.AsyncClient, accounts: Accounts) -> Catalog:
    account, staff = await accounts.create_and_login("staff")
    return Catalog(http, account, staff)


@pytest.fixture
async def served(app: HotpathApp, http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``http`` (same running app), but an unhandled error comes back as the 500 a client
    would get instead of being raised into the test."""
    async with client_for(app, client=("127.0.0.1", 1), raise_app_exceptions=False) as client:
        yield client
