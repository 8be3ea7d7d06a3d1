"""What a login hands out, seen over HTTP: a 10-minute access token by default, a refresh token
of at least 128 random bits, and HS256 when the settings ask for it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import jwt
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import create_app
from server.runtime.settings import Settings
from tests.fixtures.identity import Accounts
from tests.fixtures.support import client_for, lifespan


async def test_a_login_gives_a_ten_minute_token_and_a_long_random_refresh_token(
    http: httpx.AsyncClient, accounts: Accounts, settings: Settings
) -> None:
    account = await accounts.create()
    seen = set()
    for _ in range(3):
        body = (
            await http.post(
                "/v1/auth/login", json={"email": account.email, "password": account.password}
            )
        ).json()
        assert body["expires_in"] == settings.access_token_ttl == 600
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 600
        refresh = body["refresh_token"]
        raw = base64.urlsafe_b64decode(refresh + "=" * (-len(refresh) % 4))
        assert len(raw) * 8 >= 128
        seen.add(refresh)
    assert len(seen) == 3


@pytest.fixture
async def hs256(
    settings: Settings, logger: FilteringBoundLogger, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    configured = replace(
        settings, jwt_algorithm="HS256", jwt_keys_dir=tmp_path_factory.mktemp("hs256")
    )
    app = create_app(configured, logger=logger)
    async with lifespan(app), client_for(app) as client:
        yield client


async def test_hs256_by_configuration(hs256: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.create()
    login = await hs256.post(
        "/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("HS256", "at+jwt")
    assert header["kid"]
    me = await hs256.get("/v1/users/me", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200
    # A symmetric key is never published.
    assert (await hs256.get("/.well-known/jwks.json")).json()["keys"] == []
