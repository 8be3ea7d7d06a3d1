"""Register (enumeration safety, email verification), login and the login throttle, over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
import statistics
import time
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.auth.passwords import PasswordHasher
from server.auth.throttle import ACCOUNT_POLICY, ADDRESS_POLICY
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings
from server.users.repository import NewUser, UsersRepository
from server.web.state import app_container
from tests.fixtures.identity import Accounts, Mailbox, unique_ip
from tests.fixtures.support import client_for, lifespan

PASSWORD = "Quartz-Lantern-Orbit-7731"


def new_email() -> str:
    return f"reg-{secrets.token_hex(5)}@example.com"


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("request_id", None)
    body.pop("instance", None)
    return body


def comparable_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() != "x-request-id"}


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/v1/auth/register", json={"email": email, "password": password, "display_name": "R"}
    )


# --- register ---------------------------------------------------------------------------------


async def test_register_new_and_taken_email_get_identical_answers(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    owner = await accounts.create()
    fresh = new_email()
    new = await register(http, fresh)
    taken = await register(http, owner.email)
    # A different spelling of the taken address is the same account.
    taken_upper = await register(http, owner.email.upper())
    assert new.status_code == 202, new.text
    for response in (taken, taken_upper):
        assert response.status_code == new.status_code
        assert response.content == new.content
        assert comparable_headers(response) == comparable_headers(new)

    # The owner of the taken address is told; nothing else is sent to them.
    notices = await mailbox.messages(owner.email)
    assert notices, "the owner of a taken email got no notice"
    assert all("Someone tried to register" in m["Subject"] for m in notices)
    # The new address gets a verification mail and nothing else.
    sent = await mailbox.messages(fresh)
    assert [m["Subject"] for m in sent] == ["Confirm your email"]


async def test_register_notices_to_one_address_spend_the_account_mail_budget(
    settings: Settings, logger: FilteringBoundLogger, accounts: Accounts, mailbox: Mailbox
) -> None:
    """Registering a taken address again and again, from ever new client addresses, sends its
    owner no more "someone tried to register" mails than the per-account mail budget that
    password resets spend (HOTPATH_RATE_LIMIT_ACCOUNT_MAIL); every caller gets the same 202."""
    owner = await accounts.create()
    budgeted = dataclasses.replace(
        settings, rate_limits=True, rate_auth=(100, 60.0), rate_account_mail=(3, 3600.0)
    )
    app = create_app(budgeted, logger=logger)
    async with lifespan(app):
        answers = []
        for _ in range(10):
            async with client_for(app, client=(unique_ip(), 40000)) as client:
                answers.append(await register(client, owner.email))
        await app_container(app).accounts.drain()
    assert {(a.status_code, a.content) for a in answers} == {(202, answers[0].content)}
    notices = await mailbox.messages(owner.email)
    assert len(notices) == 3, [m["Subject"] for m in notices]


async def test_register_timing_does_not_reveal_taken_emails(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner = await accounts.create()
    await register(http, new_email())  # warm-up (pool connections, prepared statements)
    await register(http, owner.email)
    new_times: list[float] = []
    taken_times: list[float] = []
    for _ in range(9):
        for email, times in ((new_email(), new_times), (owner.email, taken_times)):
            start = time.perf_counter()
            response = await register(http, email)
            times.append(time.perf_counter() - start)
            assert response.status_code == 202
    new_median, taken_median = statistics.median(new_times), statistics.median(taken_times)
    ratio = max(new_median, taken_median) / min(new_median, taken_median)
    assert ratio < 3, f"new {new_median * 1e3:.1f} ms vs taken {taken_median * 1e3:.1f} ms"


async def test_register_does_the_same_password_work_for_a_new_and_a_taken_email(
    app: HotpathApp,
    http: httpx.AsyncClient,
    accounts: Accounts,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timing test above cannot see a skipped hash (a test-strength hash takes under 1 ms);
    counting the argon2 work can: one hash for either address, and no verification."""
    passwords: PasswordHasher = app_container(app).accounts.passwords
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(passwords, name)

        async def recorded(*args: str) -> Any:
            calls.append(name)
            return await real(*args)

        return recorded

    for name in ("hash", "verify", "verify_dummy"):
        monkeypatch.setattr(passwords, name, spy(name))
    owner = await accounts.create()  # (the factory hashes with its own hasher)
    for email in (new_email(), owner.email):
        calls.clear()
        response = await register(http, email)
        await mailbox.messages()  # drains the background work, so a hash there counts too
        assert response.status_code == 202, response.text
        assert calls == ["hash"], f"{email}: {calls}"


async def test_verification_token_verifies_the_email_once(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = new_email()
    assert (await register(http, email)).status_code == 202
    token = await mailbox.token(email, "Confirm")

    # Until the mailbox confirms it, the account cannot log in: the right password says so,
    # a wrong one is the usual 401.
    pending = await login(http, email, PASSWORD)
    assert pending.status_code == 403, pending.text
    assert pending.json()["type"].endswith("email-not-confirmed")
    assert "access_token" not in pending.text
    assert (await login(other_ip, email, PASSWORD + "-not")).status_code == 401

    verified = await http.post("/v1/auth/email/verify", json={"token": token})
    assert verified.status_code == 204, verified.text
    again = await http.post("/v1/auth/email/verify", json={"token": token})
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"].endswith("invalid-one-time-token")

    logged_in = await login(http, email, PASSWORD)
    assert logged_in.status_code == 200, logged_in.text
    headers = {"authorization": f"Bearer {logged_in.json()['access_token']}"}
    me = await http.get("/v1/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email_verified"] is True


async def test_garbage_verification_token_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/auth/email/verify", json={"token": "x" * 43})
    assert response.status_code == 400
    assert response.json()["type"].endswith("invalid-one-time-token")


async def test_resend_verification_for_an_unverified_account(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    """An active account whose email was never confirmed (made before confirmation was needed
    to log in, or by create-admin) asks for the link from a session."""
    account, session = await accounts.create_and_login()
    email, headers = account.email, session.headers
    assert (await http.post("/v1/auth/email/verify/resend", headers=headers)).status_code == 202
    first = await mailbox.token(email, "Confirm")

    resent = await http.post("/v1/auth/email/verify/resend", headers=headers)
    assert resent.status_code == 202, resent.text
    # (Not mailbox.token: mail files are named by the second, so "newest" is not reliable.)
    tokens = await mailbox.tokens(email, "Confirm")
    assert len(tokens) == 2
    assert first in tokens
    second = next(token for token in tokens if token != first)

    # The newest link works; the older one was replaced by it.
    assert (await http.post("/v1/auth/email/verify", json={"token": first})).status_code == 400
    assert (await http.post("/v1/auth/email/verify", json={"token": second})).status_code == 204
    me = await http.get("/v1/users/me", headers=headers)
    assert me.json()["email_verified"] is True

    # Once verified, a resend answers the same but sends nothing.
    assert (await http.post("/v1/auth/email/verify/resend", headers=headers)).status_code == 202
    assert len(await mailbox.messages(email)) == 2


async def test_resend_needs_authentication(http: httpx.AsyncClient) -> None:
    assert (await http.post("/v1/auth/email/verify/resend")).status_code == 401


# --- login ------------------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_get_identical_401s(
    other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    wrong = await login(other_ip, account.email, "Wrong-Password-" + secrets.token_hex(4))
    unknown = await login(other_ip, new_email(), "Wrong-Password-" + secrets.token_hex(4))
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"
    assert without_request_id(wrong) == without_request_id(unknown)
    assert comparable_headers(wrong) == comparable_headers(unknown)


async def test_unknown_email_takes_the_dummy_hash_path(
    app: HotpathApp,
    other_ip: httpx.AsyncClient,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords: PasswordHasher = app_container(app).auth.passwords
    real = passwords.verify_dummy
    calls: list[str] = []

    async def spy(password: str) -> None:
        calls.append(password)
        await real(password)

    monkeypatch.setattr(passwords, "verify_dummy", spy)
    account = await accounts.create()
    assert (await login(other_ip, account.email, "Not-The-Password-1")).status_code == 401
    assert calls == [], "a known account must be checked against its own hash"
    assert (await login(other_ip, new_email(), "Not-The-Password-2")).status_code == 401
    assert calls == ["Not-The-Password-2"]


async def test_a_disabled_account_cannot_log_in(
    other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create(status="disabled")
    response = await login(other_ip, account.email, account.password)
    assert response.status_code == 401
    assert response.json()["type"].endswith("invalid-credentials")
    assert "access_token" not in response.text


async def test_login_rehashes_a_hash_made_with_other_parameters(
    app: HotpathApp, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    old_hasher = PasswordHasher(time_cost=2, memory_cost=2048)
    try:
        old_hash = await old_hasher.hash(PASSWORD)
    finally:
        old_hasher.close()
    email = new_email()
    async with app_container(app).db.transaction() as conn:
        user = await UsersRepository(load_queries()).create(conn, NewUser(email, old_hash, "Old"))
    assert "m=2048,t=2" in old_hash

    assert (await login(http, email, PASSWORD)).status_code == 200
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    assert stored != old_hash
    assert "m=1024,t=1" in stored
    # The new hash still verifies the same password; a second login leaves it alone.
    assert (await login(http, email, PASSWORD)).status_code == 200
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id) == stored


# --- brute force ------------------------------------------------------------------------------


async def throttle_row(db: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT failures, blocked_until, now() AS now FROM login_throttle WHERE key = $1", key
    )


async def test_account_backoff_answers_429_with_retry_after(
    other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    free = ACCOUNT_POLICY.free_failures
    for attempt in range(free):
        response = await login(other_ip, account.email, f"Wrong-Password-{attempt}-x")
        assert response.status_code == 401, f"attempt {attempt + 1}: {response.text}"
    # Past the free failures the account is blocked, at the latest after one more failure.
    statuses = [
        (await login(other_ip, account.email, f"Wrong-Password-more-{i}")).status_code
        for i in range(2)
    ]
    assert statuses in ([429, 429], [401, 429]), statuses
    blocked = await login(other_ip, account.email, account.password)  # even the right one
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["type"].endswith("login-throttled")
    assert blocked.json()["status"] == 429
    retry_after = int(blocked.headers["retry-after"])
    assert 1 <= retry_after <= ACCOUNT_POLICY.cap_seconds


async def test_the_account_block_is_capped(
    other_ip: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account = await accounts.create()
    key = "acct:" + account.email
    for attempt in range(ACCOUNT_POLICY.free_failures):
        assert (
            await login(other_ip, account.email, f"Wrong-Password-{attempt}")
        ).status_code == 401
    # Pretend many failures happened long ago enough that the block has run out.
    await db.execute(
        "UPDATE login_throttle SET failures = 40, blocked_until = NULL WHERE key = $1", key
    )
    assert (await login(other_ip, account.email, "Wrong-Password-again")).status_code == 401
    row = await throttle_row(db, key)
    assert row is not None
    assert row["blocked_until"] is not None
    block = (row["blocked_until"] - row["now"]).total_seconds()
    assert ACCOUNT_POLICY.cap_seconds - 5 <= block <= ACCOUNT_POLICY.cap_seconds + 0.5
    blocked = await login(other_ip, account.email, account.password)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) <= ACCOUNT_POLICY.cap_seconds


async def test_a_very_long_attack_keeps_the_block_capped(
    other_ip: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    """An attacker who tries once per capped block (every 5 min) makes ~1,000 failures in 3.5
    days; the backoff must keep answering 401/429, never fail and stop counting."""
    account = await accounts.create()
    key = "acct:" + account.email
    assert (await login(other_ip, account.email, "Wrong-Password-0")).status_code == 401
    await db.execute(
        "UPDATE login_throttle SET failures = 1100, blocked_until = NULL WHERE key = $1", key
    )
    response = await login(other_ip, account.email, "Wrong-Password-1")
    assert response.status_code == 401, response.text
    row = await throttle_row(db, key)
    assert row is not None
    assert row["failures"] == 1101
    assert row["blocked_until"] is not None
    assert (row["blocked_until"] - row["now"]).total_seconds() <= ACCOUNT_POLICY.cap_seconds + 0.5
    assert (await login(other_ip, account.email, account.password)).status_code == 429


async def test_a_success_clears_the_account_counter(
    other_ip: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account = await accounts.create()
    key = "acct:" + account.email
    for attempt in range(ACCOUNT_POLICY.free_failures - 1):
        assert (
            await login(other_ip, account.email, f"Wrong-Password-{attempt}")
        ).status_code == 401
    assert (await throttle_row(db, key)) is not None
    assert (await login(other_ip, account.email, account.password)).status_code == 200
    assert (await throttle_row(db, key)) is None
    # A fresh allowance: the same number of failures again does not block.
    for attempt in range(ACCOUNT_POLICY.free_failures):
        assert (await login(other_ip, account.email, f"Wrong-Again-{attempt}")).status_code == 401
    assert (await login(other_ip, account.email, account.password)).status_code == 200


async def test_the_account_block_holds_from_another_address(
    app: HotpathApp, other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    for attempt in range(ACCOUNT_POLICY.free_failures + 1):
        assert (
            await login(other_ip, account.email, f"Wrong-Password-{attempt}")
        ).status_code == 401
    async with client_for(app, client=(unique_ip(), 1)) as elsewhere:
        response = await login(elsewhere, account.email, account.password)
    assert response.status_code == 429
    assert "retry-after" in response.headers


async def test_an_address_spraying_many_accounts_is_blocked(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account = await accounts.create()
    ip = unique_ip()
    async with client_for(app, client=(ip, 1)) as sprayer:
        for attempt in range(ADDRESS_POLICY.free_failures + 1):
            response = await login(sprayer, new_email(), f"Spray-Password-{attempt}")
            assert response.status_code == 401, f"attempt {attempt + 1}: {response.text}"
        row = await throttle_row(db, "ip:" + ip)
        assert row is not None
        assert row["blocked_until"] is not None
        # Every account is closed to this address now, even with the right password...
        blocked = await login(sprayer, account.email, account.password)
        assert blocked.status_code == 429
        assert "retry-after" in blocked.headers
    # ...while the account itself is fine from anywhere else.
    assert (await login(http, account.email, account.password)).status_code == 200


async def test_a_concurrent_burst_gets_no_more_guesses_than_the_free_failures(
    other_ip: httpx.AsyncClient, accounts: Accounts
) -> None:
    """Checking the block and counting the failure are separate steps: a burst sent at once
    must not get every one of its guesses checked before the first block applies."""
    account = await accounts.create()
    responses = await asyncio.gather(
        *(login(other_ip, account.email, f"Burst-Password-{i:02d}") for i in range(30))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 429}, statuses
    guesses = statuses.count(401)
    assert guesses <= ACCOUNT_POLICY.free_failures + 1, f"{guesses} of 30 guesses were checked"


async def test_block_expiry_is_in_the_future_and_counted_in_the_database(
    other_ip: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account = await accounts.create()
    key = "acct:" + account.email
    for attempt in range(ACCOUNT_POLICY.free_failures + 1):
        await login(other_ip, account.email, f"Wrong-Password-{attempt}")
    row = await throttle_row(db, key)
    assert row is not None
    assert row["failures"] == ACCOUNT_POLICY.free_failures + 1
    assert row["blocked_until"] is not None
    assert dt.timedelta(0) < row["blocked_until"] - row["now"] <= dt.timedelta(seconds=1.5)
