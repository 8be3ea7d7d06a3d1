"""Guesses at the current password from a signed-in session (password change, account deletion)
count on the login's per-account backoff: a stolen session gets no more guesses than a login."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from server.auth.throttle import ACCOUNT_POLICY
from tests.fixtures.identity import Account, Accounts, Tokens

NEW_PASSWORD = "Velvet-Harbor-Compass-0451"

Guess = Callable[[httpx.AsyncClient, Tokens, str], Awaitable[httpx.Response]]


async def change(http: httpx.AsyncClient, tokens: Tokens, current: str) -> httpx.Response:
    return await http.post(
        "/v1/auth/password/change",
        json={"current_password": current, "new_password": NEW_PASSWORD},
        headers=tokens.headers,
    )


async def delete_me(http: httpx.AsyncClient, tokens: Tokens, password: str) -> httpx.Response:
    return await http.request(
        "DELETE", "/v1/users/me", json={"password": password}, headers=tokens.headers
    )


ENDPOINTS = pytest.mark.parametrize(
    "guess", [change, delete_me], ids=["password-change", "delete-me"]
)


async def login(client: httpx.AsyncClient, account: Account, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": account.email, "password": password})


async def failures(db: asyncpg.Connection, account: Account) -> int | None:
    value: int | None = await db.fetchval(
        "SELECT failures FROM login_throttle WHERE key = $1", "acct:" + account.email
    )
    return value


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("login-throttled")
    assert 1 <= int(response.headers["retry-after"]) <= ACCOUNT_POLICY.cap_seconds


async def unchanged(db: asyncpg.Connection, account: Account, before: str) -> bool:
    stored: str | None = await db.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", account.id
    )
    return stored == before


@ENDPOINTS
async def test_wrong_current_passwords_get_the_login_backoff(
    http: httpx.AsyncClient,
    other_ip: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    guess: Guess,
) -> None:
    account, tokens = await accounts.create_and_login()
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", account.id)
    for attempt in range(ACCOUNT_POLICY.free_failures):
        response = await guess(http, tokens, f"Wrong-Password-{attempt}-x")
        assert response.status_code == 400, f"attempt {attempt + 1}: {response.text}"
        assert response.json()["type"].endswith("wrong-password")
    # Past the free failures the account is blocked, at the latest after one more failure.
    statuses = [(await guess(http, tokens, f"Wrong-More-{i}-x")).status_code for i in range(2)]
    assert statuses in ([429, 429], [400, 429]), statuses
    assert_throttled(await guess(http, tokens, account.password))  # even the right one
    # The very counter a login uses: logging in is blocked too, from any address.
    assert_throttled(await login(other_ip, account, account.password))
    # Every checked guess was counted (a refused one is not: it did not get to guess).
    assert await failures(db, account) == ACCOUNT_POLICY.free_failures + statuses.count(400)
    # Nothing happened: same password, account and session still there.
    assert await unchanged(db, account, stored)
    assert (await http.get("/v1/users/me", headers=tokens.headers)).status_code == 200


@ENDPOINTS
async def test_failed_logins_block_the_current_password_check(
    http: httpx.AsyncClient,
    other_ip: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    guess: Guess,
) -> None:
    account, tokens = await accounts.create_and_login()
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", account.id)
    for attempt in range(ACCOUNT_POLICY.free_failures + 1):
        response = await login(other_ip, account, f"Wrong-Password-{attempt}-x")
        assert response.status_code == 401, response.text
    assert_throttled(await guess(http, tokens, account.password))
    assert await unchanged(db, account, stored)


@ENDPOINTS
async def test_a_concurrent_burst_of_guesses_gets_no_more_than_the_free_failures(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection, guess: Guess
) -> None:
    account, tokens = await accounts.create_and_login()
    responses = await asyncio.gather(
        *(guess(http, tokens, f"Burst-Password-{i:02d}") for i in range(20))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {400, 429}, statuses
    checked = statuses.count(400)
    assert checked <= ACCOUNT_POLICY.free_failures + 1, f"{checked} of 20 guesses were checked"
    assert await failures(db, account) == checked


@ENDPOINTS
async def test_the_right_password_clears_the_account_counter(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection, guess: Guess
) -> None:
    account, tokens = await accounts.create_and_login()
    for attempt in range(ACCOUNT_POLICY.free_failures - 1):
        assert (await guess(http, tokens, f"Wrong-Password-{attempt}-x")).status_code == 400
    assert await failures(db, account) == ACCOUNT_POLICY.free_failures - 1
    assert (await guess(http, tokens, account.password)).status_code == 204
    assert await failures(db, account) is None


async def test_a_refused_new_password_spends_no_guess_at_the_current_one(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    """A new password the policy refuses (a common one) is a 422 pointing at it, whatever the
    current password sent: more such requests than the free failures neither count nor block
    the account."""
    account, tokens = await accounts.create_and_login()
    for attempt in range(ACCOUNT_POLICY.free_failures + 2):
        response = await http.post(
            "/v1/auth/password/change",
            json={
                "current_password": f"Wrong-Password-{attempt}-x",
                "new_password": "1qaz2wsx3edc",
            },
            headers=tokens.headers,
        )
        assert response.status_code == 422, response.text
        assert [e["pointer"] for e in response.json()["errors"]] == ["/new_password"]
    assert await failures(db, account) is None
    assert (await change(http, tokens, account.password)).status_code == 204
