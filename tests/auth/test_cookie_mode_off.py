"""With cookie mode off (the default) a login cannot ask for cookies, a refresh needs its token
in the body, and a session cookie a client sends anyway authenticates nothing."""

from __future__ import annotations

import httpx

from server.auth.cookies import CSRF_COOKIE, REFRESH_COOKIE
from tests.fixtures.identity import Accounts
from tests.fixtures.support import assert_problem


async def test_cookie_mode_is_off_by_default(http: httpx.AsyncClient, accounts: Accounts) -> None:
    account = await accounts.create()
    body = {"email": account.email, "password": account.password, "cookie": True}
    refused = await http.post("/v1/auth/login", json=body)
    assert_problem(refused, 422, "validation-failed")
    assert refused.json()["errors"][0]["pointer"] == "/cookie"
    assert "set-cookie" not in refused.headers

    tokens = await accounts.login(account)
    cookie = {
        "cookie": f"{REFRESH_COOKIE}={tokens.refresh}; {CSRF_COOKIE}=t",
        "x-csrf-token": "t",
        "sec-fetch-site": "same-origin",
    }
    missing = await http.post("/v1/auth/refresh", headers=cookie)
    assert_problem(missing, 422, "validation-failed")
    assert missing.json()["errors"][0]["pointer"] == "/refresh_token"
    # The refresh token was not consumed by the cookie attempt.
    ok = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert ok.status_code == 200, ok.text
