"""Forgot/reset and change password, and the password policy, over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from typing import Any

import asyncpg
import httpx
import pytest

from server.auth.account_service import RESET_TTL
from server.auth.repository import one_time_digest
from tests.fixtures.identity import Account, Accounts, Mailbox, Tokens

NEW_PASSWORD = "Velvet-Harbor-Compass-0451"
COMMON = "Password1234!"
SHORT = "Sh0rt-Pw!"


def local_part(account: Account) -> str:
    return account.email.partition("@")[0]


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/v1/auth/refresh", json={"refresh_token": token})


async def me_status(http: httpx.AsyncClient, tokens: Tokens) -> int:
    return (await http.get("/v1/users/me", headers=tokens.headers)).status_code


async def forgot(http: httpx.AsyncClient, email: str) -> httpx.Response:
    return await http.post("/v1/auth/password/forgot", json={"email": email})


async def reset(http: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await http.post("/v1/auth/password/reset", json={"token": token, "password": password})


async def change(http: httpx.AsyncClient, tokens: Tokens, current: str, new: str) -> httpx.Response:
    return await http.post(
        "/v1/auth/password/change",
        json={"current_password": current, "new_password": new},
        headers=tokens.headers,
    )


def pointers(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return [error["pointer"] for error in body["errors"]]


def headers_without_request_id(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() != "x-request-id"}


# --- forgot / reset ---------------------------------------------------------------------------


async def test_forgot_answers_the_same_for_known_and_unknown_emails(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    known = await accounts.create()
    disabled = await accounts.create(status="disabled")
    unknown = f"nobody-{secrets.token_hex(5)}@example.com"
    answers = [await forgot(http, email) for email in (known.email, unknown, disabled.email)]
    assert answers[0].status_code == 202, answers[0].text
    for answer in answers[1:]:
        assert answer.status_code == 202
        assert answer.content == answers[0].content
        assert headers_without_request_id(answer) == headers_without_request_id(answers[0])
    assert answers[0].headers["cache-control"] == "no-store"

    assert [m["Subject"] for m in await mailbox.messages(known.email)] == ["Reset your password"]
    assert await mailbox.messages(unknown) == []
    assert await mailbox.messages(disabled.email) == []


async def test_reset_token_works_once_and_a_policy_failure_does_not_spend_it(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    account = await accounts.create()
    assert (await forgot(http, account.email)).status_code == 202
    token = await mailbox.token(account.email, "Reset")

    assert pointers(await reset(http, token, SHORT)) == ["/password"]
    assert pointers(await reset(http, token, COMMON)) == ["/password"]
    assert pointers(await reset(http, token, local_part(account) + "-Zebra-99")) == ["/password"]

    done = await reset(http, token, NEW_PASSWORD)
    assert done.status_code == 204, done.text
    again = await reset(http, token, NEW_PASSWORD + "-again")
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"].endswith("invalid-one-time-token")

    assert (await login(other_ip, account.email, account.password)).status_code == 401
    assert (await login(http, account.email, NEW_PASSWORD)).status_code == 200


async def test_a_reset_token_lives_its_set_lifetime_and_is_refused_once_expired(
    http: httpx.AsyncClient,
    other_ip: httpx.AsyncClient,
    accounts: Accounts,
    mailbox: Mailbox,
    db: asyncpg.Connection,
) -> None:
    account = await accounts.create()
    assert (await forgot(http, account.email)).status_code == 202
    token = await mailbox.token(account.email, "Reset")
    (message,) = await mailbox.messages(account.email)
    minutes = int(RESET_TTL.total_seconds() // 60)
    # Short-lived, and the mail tells the lifetime the token really has.
    assert dt.timedelta(minutes=1) <= RESET_TTL <= dt.timedelta(hours=1)
    assert f"expires in {minutes} minutes" in str(message.get_content())
    row = await db.fetchrow(
        "SELECT created_at, expires_at FROM one_time_tokens"
        " WHERE token_hash = $1 AND purpose = 'password_reset' AND used_at IS NULL",
        one_time_digest(token),
    )
    assert row is not None
    lifetime = row["expires_at"] - row["created_at"]
    assert abs(lifetime - RESET_TTL) < dt.timedelta(seconds=5), lifetime

    await db.execute(
        "UPDATE one_time_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        one_time_digest(token),
    )
    expired = await reset(http, token, NEW_PASSWORD)
    assert expired.status_code == 400
    assert expired.headers["content-type"] == "application/problem+json"
    assert expired.json()["type"].endswith("invalid-one-time-token")
    # Nothing changed: the old password still works, the new one does not.
    assert (await login(other_ip, account.email, NEW_PASSWORD)).status_code == 401
    assert (await login(http, account.email, account.password)).status_code == 200


async def test_a_garbage_or_wrong_purpose_token_cannot_reset(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    assert (await reset(http, secrets.token_urlsafe(32), NEW_PASSWORD)).status_code == 400
    email = f"purpose-{secrets.token_hex(5)}@example.com"
    registered = await http.post(
        "/v1/auth/register", json={"email": email, "password": "Amber-Falcon-Ridge-2290"}
    )
    assert registered.status_code == 202
    verification = await mailbox.token(email, "Confirm")
    assert (await reset(http, verification, NEW_PASSWORD)).status_code == 400
    # ...and the failed attempt did not spend the verification token.
    verify = await http.post("/v1/auth/email/verify", json={"token": verification})
    assert verify.status_code == 204


async def test_a_newer_reset_link_replaces_the_older_one(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    account = await accounts.create()
    await forgot(http, account.email)
    first = await mailbox.token(account.email, "Reset")
    await forgot(http, account.email)
    tokens = []
    for message in await mailbox.messages(account.email):
        lines = [line.strip() for line in str(message.get_content()).splitlines()]
        tokens += [line for line in lines if " " not in line and len(line) >= 32]
    assert len(tokens) == 2
    assert first in tokens
    second = next(token for token in tokens if token != first)
    assert (await reset(http, first, NEW_PASSWORD)).status_code == 400
    assert (await reset(http, second, NEW_PASSWORD)).status_code == 204


async def test_reset_ends_every_session(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    account, first = await accounts.create_and_login()
    second = await accounts.login(account)
    await forgot(http, account.email)
    token = await mailbox.token(account.email, "Reset")
    assert (await reset(http, token, NEW_PASSWORD)).status_code == 204
    for tokens in (first, second):
        assert await me_status(http, tokens) == 401
        assert (await refresh(http, tokens.refresh)).status_code == 401


async def test_a_login_right_after_a_reset_gets_a_working_token(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    account, _ = await accounts.create_and_login()
    await forgot(http, account.email)
    token = await mailbox.token(account.email, "Reset")
    # Just after a second boundary: the reset and the login fall in the same clock second.
    await asyncio.sleep(1.02 - time.time() % 1)
    assert (await reset(http, token, NEW_PASSWORD)).status_code == 204
    logged_in = await login(http, account.email, NEW_PASSWORD)
    assert logged_in.status_code == 200
    fresh = Tokens(logged_in.json()["access_token"], logged_in.json()["refresh_token"])
    assert await me_status(http, fresh) == 200


# --- change -----------------------------------------------------------------------------------


async def test_change_needs_the_current_password(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    account, tokens = await accounts.create_and_login()
    other = await accounts.login(account)
    response = await change(http, tokens, "Not-The-Current-One-1", NEW_PASSWORD)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("wrong-password")
    # Nothing changed: the old password works, the new one does not, no session ended.
    assert (await login(other_ip, account.email, NEW_PASSWORD)).status_code == 401
    assert (await login(http, account.email, account.password)).status_code == 200
    assert await me_status(http, other) == 200


async def test_change_ends_every_other_session(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    account, current = await accounts.create_and_login()
    others = [await accounts.login(account) for _ in range(2)]
    response = await change(http, current, account.password, NEW_PASSWORD)
    assert response.status_code == 204, response.text

    assert await me_status(http, current) == 200
    for tokens in others:
        assert await me_status(http, tokens) == 401
        assert (await refresh(http, tokens.refresh)).status_code == 401
    # The current session goes on, refresh included.
    assert (await refresh(http, current.refresh)).status_code == 200

    assert (await login(other_ip, account.email, account.password)).status_code == 401
    assert (await login(http, account.email, NEW_PASSWORD)).status_code == 200


async def test_change_refuses_a_weak_new_password_and_changes_nothing(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    account, current = await accounts.create_and_login()
    other = await accounts.login(account)
    for weak in (SHORT, COMMON, "My-" + local_part(account) + "-Password"):
        response = await change(http, current, account.password, weak)
        assert pointers(response) == ["/new_password"], weak
    assert await me_status(http, other) == 200
    assert (await login(http, account.email, account.password)).status_code == 200


# --- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "words"),
    [
        (SHORT, "at least 12"),
        ("a" * 11, "at least 12"),
        (COMMON, "common"),
        ("iloveyou2024!", "common"),
        ("monkeymonkeymonkey", "common"),
        ("qwertyuiop1234", "common"),
        ("{local}-Quokka", "email"),
        ("Quokka-{LOCAL}", "email"),
    ],
)
async def test_register_refuses_policy_violations(
    http: httpx.AsyncClient, password: str, words: str
) -> None:
    local = f"pol{secrets.token_hex(4)}"
    email = f"{local}@example.com"
    candidate = password.format(local=local, LOCAL=local.upper())
    response = await http.post("/v1/auth/register", json={"email": email, "password": candidate})
    assert pointers(response) == ["/password"]
    details = " ".join(error["detail"] for error in response.json()["errors"])
    assert words in details.lower() or words in details


async def test_a_policy_violation_is_the_same_answer_for_a_taken_email(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner = await accounts.create()
    fresh = f"fresh-{secrets.token_hex(5)}@example.com"
    answers = [
        await http.post("/v1/auth/register", json={"email": email, "password": COMMON})
        for email in (owner.email, fresh)
    ]
    assert answers[0].status_code == answers[1].status_code == 422
    bodies = [a.json() for a in answers]
    for body in bodies:
        body.pop("request_id", None)
    assert bodies[0] == bodies[1]


async def test_the_policy_judges_the_password_that_is_actually_stored(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient
) -> None:
    """Passwords are NFKC-normalised before hashing: a full-width spelling of a common password
    is that common password (it logs in with plain ASCII), so the policy must refuse it."""
    email = f"fullwidth-{secrets.token_hex(5)}@example.com"
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "password1234")  # U+FF50 U+FF41 ...
    response = await http.post("/v1/auth/register", json={"email": email, "password": fullwidth})
    assert pointers(response) == ["/password"]
    assert (await login(other_ip, email, "password1234")).status_code == 401
