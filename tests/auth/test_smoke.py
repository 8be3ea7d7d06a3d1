from __future__ import annotations

import httpx

from tests.fixtures.identity import Accounts


async def test_login_then_me(http: httpx.AsyncClient, accounts: Accounts) -> None:
    account, tokens = await accounts.create_and_login("customer")
    me = await http.get("/v1/users/me", headers=tokens.headers)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == account.email
    assert me.headers["cache-control"] == "no-store"
