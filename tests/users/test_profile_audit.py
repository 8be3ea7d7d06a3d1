"""The owner's profile (/users/me), the audit trail, and secrets kept out of logs and audit."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from server.app import HotpathApp
from server.runtime.logs import flush_logs
from server.web.state import app_container
from tests.fixtures.identity import Accounts, Mailbox, Tokens, unique_ip
from tests.fixtures.support import client_for

AGENT = "audit-probe/1.0 (+canary)"


@pytest.fixture
def probe_ip() -> str:
    return unique_ip()


@pytest.fixture
async def probe(
    app: HotpathApp, http: httpx.AsyncClient, probe_ip: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own address and user agent, to find them in the audit trail."""
    async with client_for(app, client=(probe_ip, 1)) as client:
        client.headers["user-agent"] = AGENT
        yield client


def tokens_of(response: httpx.Response) -> Tokens:
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(body["access_token"], body["refresh_token"])


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def delete_me(http: httpx.AsyncClient, tokens: Tokens, password: str) -> httpx.Response:
    return await http.request(
        "DELETE", "/v1/users/me", json={"password": password}, headers=tokens.headers
    )


# --- PATCH / DELETE /v1/users/me ----------------------------------------------------------------


async def test_patch_me_changes_the_display_name(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    account, tokens = await accounts.create_and_login()
    response = await http.patch(
        "/v1/users/me", json={"display_name": "Ada L."}, headers=tokens.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "Ada L."
    me = (await http.get("/v1/users/me", headers=tokens.headers)).json()
    assert (me["display_name"], me["email"], me["roles"]) == ("Ada L.", account.email, ["customer"])


@pytest.mark.parametrize(
    "extra",
    [
        {"roles": ["admin"]},
        {"status": "disabled"},
        {"email": "someone-else@example.com"},
        {"display_name": "Mallory", "roles": ["admin"]},
        {"display_name": "Mallory", "status": "disabled"},
        {"display_name": "Mallory", "email": "someone-else@example.com"},
    ],
)
async def test_patch_me_refuses_other_fields_and_changes_nothing(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection, extra: dict[str, Any]
) -> None:
    account, tokens = await accounts.create_and_login()
    before = await db.fetchrow("SELECT * FROM users WHERE id = $1", account.id)
    response = await http.patch("/v1/users/me", json=extra, headers=tokens.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    after = await db.fetchrow("SELECT * FROM users WHERE id = $1", account.id)
    assert after == before
    me = (await http.get("/v1/users/me", headers=tokens.headers)).json()
    assert (me["display_name"], me["email"], me["roles"], me["status"]) == (
        "Test",
        account.email,
        ["customer"],
        "active",
    )


async def test_patch_me_needs_authentication(http: httpx.AsyncClient) -> None:
    assert (await http.patch("/v1/users/me", json={"display_name": "x"})).status_code == 401


async def test_delete_me_needs_the_password_then_ends_everything(
    http: httpx.AsyncClient,
    probe: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
) -> None:
    account, tokens = await accounts.create_and_login()
    other = await accounts.login(account)
    wrong = await delete_me(http, tokens, "Not-My-Password-42")
    assert wrong.status_code == 400
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["type"].endswith("wrong-password")
    assert (await http.get("/v1/users/me", headers=tokens.headers)).status_code == 200

    done = await delete_me(http, tokens, account.password)
    assert done.status_code == 204, done.text
    for session in (tokens, other):
        assert (await http.get("/v1/users/me", headers=session.headers)).status_code == 401
        refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": session.refresh})
        assert refreshed.status_code == 401
    assert (await login(probe, account.email, account.password)).status_code == 401
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", account.id) == 0
    events = await db.fetch(
        "SELECT * FROM audit_events WHERE action = 'user.deleted' AND target_id = $1 ORDER BY id",
        str(account.id),
    )
    assert [(e["outcome"], e["request_id"]) for e in events] == [
        ("failure", wrong.headers["x-request-id"]),
        ("success", done.headers["x-request-id"]),
    ]


# --- audit trail ------------------------------------------------------------------------------


async def audit_row(db: asyncpg.Connection, response: httpx.Response) -> asyncpg.Record:
    rows = await db.fetch(
        "SELECT * FROM audit_events WHERE request_id = $1", response.headers["x-request-id"]
    )
    assert len(rows) == 1, f"{len(rows)} audit rows for {response.request.url.path}"
    row: asyncpg.Record = rows[0]
    return row


async def test_the_flows_leave_a_complete_audit_trail(
    http: httpx.AsyncClient,
    probe: httpx.AsyncClient,
    probe_ip: str,
    accounts: Accounts,
    mailbox: Mailbox,
    db: asyncpg.Connection,
) -> None:
    account = await accounts.create()
    seen: list[tuple[httpx.Response, str, str, int | None]] = []  # response, action, outcome, actor

    failed = await login(probe, account.email, "Wrong-Password-For-Audit")
    assert failed.status_code == 401
    seen.append((failed, "auth.login", "failure", None))
    unknown = await login(probe, f"ghost-{secrets.token_hex(4)}@example.com", "Whatever-Pass-1")
    assert unknown.status_code == 401
    seen.append((unknown, "auth.login", "failure", None))

    logged_in = await login(probe, account.email, account.password)
    tokens = tokens_of(logged_in)
    seen.append((logged_in, "auth.login", "success", account.id))

    wrong_change = await probe.post(
        "/v1/auth/password/change",
        json={"current_password": "Not-Current-Pass-9", "new_password": "Brand-New-Pass-9931"},
        headers=tokens.headers,
    )
    assert wrong_change.status_code == 400
    seen.append((wrong_change, "auth.password_change", "failure", account.id))
    changed = await probe.post(
        "/v1/auth/password/change",
        json={"current_password": account.password, "new_password": "Brand-New-Pass-9931"},
        headers=tokens.headers,
    )
    assert changed.status_code == 204
    seen.append((changed, "auth.password_change", "success", account.id))

    logged_out = await probe.post("/v1/auth/logout", headers=tokens.headers)
    assert logged_out.status_code == 204
    seen.append((logged_out, "auth.logout", "success", account.id))

    assert (await probe.post("/v1/auth/password/forgot", json={"email": account.email})).is_success
    token = await mailbox.token(account.email, "Reset")
    reset = await probe.post(
        "/v1/auth/password/reset", json={"token": token, "password": "Reset-Pass-Granite-77"}
    )
    assert reset.status_code == 204
    seen.append((reset, "auth.password_reset", "success", account.id))

    email = f"audit-{secrets.token_hex(5)}@example.com"
    await probe.post("/v1/auth/register", json={"email": email, "password": "Audit-Pass-Heron-5"})
    verify_token = await mailbox.token(email, "Confirm")
    verified = await probe.post("/v1/auth/email/verify", json={"token": verify_token})
    assert verified.status_code == 204
    new_user_id = await db.fetchval("SELECT id FROM users WHERE email = $1", email)
    seen.append((verified, "auth.email_verified", "success", new_user_id))

    for response, action, outcome, actor in seen:
        row = await audit_row(db, response)
        where = f"{action}/{outcome}"
        assert (row["action"], row["outcome"]) == (action, outcome), where
        assert row["ip"] == probe_ip, where
        assert row["user_agent"] == AGENT, where
        assert row["request_id"] == response.headers["x-request-id"], where
        assert row["actor_id"] == actor, where

    # Failed logins say which account (when there is one) and why, for the account's owner.
    failure = await audit_row(db, failed)
    assert failure["target_id"] == str(account.id)
    assert json.loads(failure["details"]) == {"reason": "wrong_password"}
    ghost = await audit_row(db, unknown)
    assert ghost["target_id"] == ""
    assert json.loads(ghost["details"]) == {"reason": "unknown_email"}
    logout = await audit_row(db, logged_out)
    assert (logout["target_type"], logout["target_id"]) == ("session", session_id(tokens))


def session_id(tokens: Tokens) -> str:
    sid: str = jwt.decode(tokens.access, options={"verify_signature": False})["sid"]
    return sid


async def test_a_client_request_id_is_recorded_as_given(
    probe: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account = await accounts.create()
    rid = "client-trace-" + secrets.token_hex(6)
    response = await probe.post(
        "/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"x-request-id": rid},
    )
    assert response.headers["x-request-id"] == rid
    row = await audit_row(db, response)
    assert row["request_id"] == rid


async def test_the_audit_trail_is_append_only(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    await accounts.create_and_login()  # at least one row exists
    row_id = await db.fetchval("SELECT max(id) FROM audit_events")
    assert row_id is not None
    for statement in (
        "UPDATE audit_events SET outcome = 'success', details = '{}' WHERE id = $1",
        "DELETE FROM audit_events WHERE id = $1",
    ):
        # In a transaction that is rolled back either way, so a broken guard cannot lose rows.
        transaction = db.transaction()
        await transaction.start()
        try:
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await db.execute(statement, row_id)
        finally:
            await transaction.rollback()
    transaction = db.transaction()
    await transaction.start()
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await db.execute("TRUNCATE audit_events")
    finally:
        await transaction.rollback()
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE id = $1", row_id) == 1


# --- canaries ---------------------------------------------------------------------------------


def canary(name: str) -> str:
    return f"Canary{name}-{secrets.token_hex(6)}-Xylophone"


async def test_no_secret_reaches_a_log_line_or_the_audit_trail(
    app: HotpathApp,
    http: httpx.AsyncClient,
    probe: httpx.AsyncClient,
    mailbox: Mailbox,
    db: asyncpg.Connection,
    log_stream: io.BytesIO,
) -> None:
    passwords = {name: canary(name) for name in ("Reg", "Taken", "Wrong", "Chg", "Bad", "Rst")}
    passwords["Ghost"] = canary("Ghost")
    passwords["Del"] = canary("Del")
    passwords["Short"] = "CnryS" + secrets.token_hex(2)  # too short: a 422 path
    secret_values: list[str] = []
    problems: list[httpx.Response] = []

    def keep(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            problems.append(response)
        return response

    email = f"canary-{secrets.token_hex(5)}@example.com"
    register = {"email": email, "password": passwords["Reg"], "display_name": "Canary"}
    assert keep(await http.post("/v1/auth/register", json=register)).status_code == 202
    # Confirmed before the taken registration: one over an unconfirmed account retires its link.
    verify_token = await mailbox.token(email, "Confirm")
    secret_values.append(verify_token)
    assert keep(await http.post("/v1/auth/email/verify", json={"token": verify_token})).is_success
    taken = {**register, "password": passwords["Taken"]}
    assert keep(await http.post("/v1/auth/register", json=taken)).status_code == 202
    short = {**register, "password": passwords["Short"]}
    assert keep(await http.post("/v1/auth/register", json=short)).status_code == 422
    secret_values.append(
        await db.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    )

    assert keep(await login(probe, email, passwords["Wrong"])).status_code == 401
    assert keep(await login(probe, "ghost-" + email, passwords["Ghost"])).status_code == 401
    first = tokens_of(keep(await login(http, email, passwords["Reg"])))
    second = tokens_of(
        keep(await http.post("/v1/auth/refresh", json={"refresh_token": first.refresh}))
    )
    replay = keep(await http.post("/v1/auth/refresh", json={"refresh_token": first.refresh}))
    assert tokens_of(replay).refresh == second.refresh
    secret_values += [first.access, first.refresh, second.access, second.refresh]
    secret_values.append(replay.json()["access_token"])

    changed = await http.post(
        "/v1/auth/password/change",
        json={"current_password": passwords["Reg"], "new_password": passwords["Chg"]},
        headers=second.headers,
    )
    assert keep(changed).status_code == 204
    secret_values.append(
        await db.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    )

    assert keep(await http.post("/v1/auth/password/forgot", json={"email": email})).is_success
    reset_token = await mailbox.token(email, "Reset")
    secret_values.append(reset_token)
    bad = {"token": reset_token, "password": f"{email.partition('@')[0]}{passwords['Bad']}"}
    assert keep(await http.post("/v1/auth/password/reset", json=bad)).status_code == 422
    good = {"token": reset_token, "password": passwords["Rst"]}
    assert keep(await http.post("/v1/auth/password/reset", json=good)).status_code == 204
    secret_values.append(
        await db.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    )

    third = tokens_of(keep(await login(http, email, passwords["Rst"])))
    secret_values += [third.access, third.refresh]
    assert keep(await http.post("/v1/auth/logout", headers=third.headers)).status_code == 204
    assert (
        keep(await http.post("/v1/auth/refresh", json={"refresh_token": third.refresh})).status_code
        == 401
    )
    # Refresh-token reuse (an older token of the family comes back): audited, family ended.
    gen1 = tokens_of(keep(await login(http, email, passwords["Rst"])))
    gen2 = tokens_of(
        keep(await http.post("/v1/auth/refresh", json={"refresh_token": gen1.refresh}))
    )
    gen3 = tokens_of(
        keep(await http.post("/v1/auth/refresh", json={"refresh_token": gen2.refresh}))
    )
    secret_values += [
        gen1.access,
        gen1.refresh,
        gen2.access,
        gen2.refresh,
        gen3.access,
        gen3.refresh,
    ]
    reuse = keep(await http.post("/v1/auth/refresh", json={"refresh_token": gen1.refresh}))
    assert reuse.status_code == 401
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_events"
            " WHERE action = 'auth.refresh_reuse' AND request_id = $1",
            reuse.headers["x-request-id"],
        )
        == 1
    )

    fourth = tokens_of(keep(await login(http, email, passwords["Rst"])))
    secret_values += [fourth.access, fourth.refresh]
    assert keep(await delete_me(http, fourth, passwords["Del"])).status_code == 400
    assert keep(await delete_me(http, fourth, passwords["Rst"])).status_code == 204
    assert keep(await http.get("/v1/users/me", headers=fourth.headers)).status_code == 401

    await app_container(app).accounts.drain()
    flush_logs()
    secret_values += list(passwords.values())
    # A password hash also leaks as its salt or digest alone.
    for value in list(secret_values):
        if value.startswith("$argon2"):
            secret_values += value.rsplit("$", 2)[1:]
    assert all(secret_values)

    log_text = log_stream.getvalue().decode("utf-8", "replace")
    assert '"http_request"' in log_text  # the access log was captured
    audit_rows = await db.fetch(
        "SELECT id, concat_ws('|', action, outcome, actor_id::text, target_type, target_id, ip,"
        " user_agent, request_id, details::text) AS text FROM audit_events"
    )
    assert audit_rows
    for value in secret_values:
        assert value not in log_text, "a secret reached the logs"
        leaking = [row["id"] for row in audit_rows if value in row["text"]]
        assert not leaking, f"a secret reached audit_events rows {leaking}"
        for response in problems:
            assert value not in response.text, f"a secret echoed in {response.request.url.path}"
    assert '"log.level":"error"' not in log_text, "an error was logged during the flows"
