"""Refresh-token rotation (grace window, concurrency, reuse detection), logout and sessions."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import replace

import asyncpg
import httpx
import jwt
import pytest

from server.app import HotpathApp
from server.auth.refresh_tokens import digest
from server.runtime.settings import Settings
from server.web.state import app_container
from tests.fixtures.identity import Account, Accounts, Tokens, unique_ip
from tests.fixtures.support import client_for


@pytest.fixture
def grace_seconds() -> float:
    return 10.0


@pytest.fixture
def settings(settings: Settings, grace_seconds: float) -> Settings:
    return replace(settings, refresh_grace_seconds=grace_seconds)


def session_id(tokens: Tokens) -> str:
    claims = jwt.decode(tokens.access, options={"verify_signature": False})
    sid: str = claims["sid"]
    return sid


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/v1/auth/refresh", json={"refresh_token": token})


def pair(response: httpx.Response) -> Tokens:
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(body["access_token"], body["refresh_token"])


async def me_status(http: httpx.AsyncClient, tokens: Tokens) -> int:
    return (await http.get("/v1/users/me", headers=tokens.headers)).status_code


async def generations(db: asyncpg.Connection, sid: str) -> list[int]:
    rows = await db.fetch(
        "SELECT generation FROM refresh_tokens WHERE session_id = $1 ORDER BY generation",
        uuid.UUID(sid),
    )
    return [row["generation"] for row in rows]


async def audit_event(db: asyncpg.Connection, response: httpx.Response) -> asyncpg.Record:
    """The one audit row the request behind ``response`` wrote."""
    rows = await db.fetch(
        "SELECT * FROM audit_events WHERE request_id = $1", response.headers["x-request-id"]
    )
    assert len(rows) == 1, f"{len(rows)} audit rows for {response.request.url.path}"
    row: asyncpg.Record = rows[0]
    return row


async def login_from(
    app: HotpathApp, account: Account, *, ip: str, user_agent: str
) -> tuple[Tokens, httpx.Response]:
    async with client_for(app, client=(ip, 4242)) as client:
        response = await client.post(
            "/v1/auth/login",
            json={"email": account.email, "password": account.password},
            headers={"user-agent": user_agent},
        )
    return pair(response), response


# --- rotation ---------------------------------------------------------------------------------


async def test_each_refresh_returns_a_new_token_and_rotates_the_old(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, first = await accounts.create_and_login()
    sid = session_id(first)
    response = await refresh(http, first.refresh)
    assert response.headers["cache-control"] == "no-store"
    second = pair(response)
    assert response.json()["token_type"] == "Bearer"
    assert second.refresh != first.refresh
    assert session_id(second) == sid
    third = pair(await refresh(http, second.refresh))
    assert len({first.refresh, second.refresh, third.refresh}) == 3
    assert await me_status(http, third) == 200

    assert await generations(db, sid) == [1, 2, 3]
    rotated = {
        bytes(row["token_hash"]): row["rotated_at"]
        for row in await db.fetch(
            "SELECT token_hash, rotated_at FROM refresh_tokens WHERE session_id = $1",
            uuid.UUID(sid),
        )
    }
    assert rotated[digest(first.refresh)] is not None
    assert rotated[digest(second.refresh)] is not None
    assert rotated[digest(third.refresh)] is None


async def test_replay_within_the_grace_window_gets_the_same_successor(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, first = await accounts.create_and_login()
    second = pair(await refresh(http, first.refresh))
    replayed = pair(await refresh(http, first.refresh))
    assert replayed.refresh == second.refresh
    assert await generations(db, session_id(first)) == [1, 2]
    assert await me_status(http, replayed) == 200
    # The successor is still the live token: using it rotates normally.
    third = pair(await refresh(http, second.refresh))
    assert third.refresh != second.refresh
    assert await generations(db, session_id(first)) == [1, 2, 3]


async def test_an_older_token_is_reuse_even_within_the_grace_window(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, first = await accounts.create_and_login()
    second = pair(await refresh(http, first.refresh))
    third = pair(await refresh(http, second.refresh))
    # first was replaced by second, which was replaced in turn: first is not "just replaced".
    assert (await refresh(http, first.refresh)).status_code == 401
    assert (await refresh(http, third.refresh)).status_code == 401
    assert await me_status(http, third) == 401


async def test_fifty_concurrent_refreshes_share_one_successor(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, first = await accounts.create_and_login()
    responses = await asyncio.gather(*(refresh(http, first.refresh) for _ in range(50)))
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 50, statuses
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    assert first.refresh not in successors
    assert await generations(db, session_id(first)) == [1, 2]
    (successor,) = successors
    assert (await refresh(http, successor)).status_code == 200


@pytest.mark.parametrize("grace_seconds", [0.2])
async def test_replay_after_the_grace_window_revokes_the_family(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account, first = await accounts.create_and_login()
    elsewhere = await accounts.login(account)  # another session of the same user
    second = pair(await refresh(http, first.refresh))
    assert await me_status(http, second) == 200
    await asyncio.sleep(0.35)

    reused = await refresh(http, first.refresh)
    assert reused.status_code == 401
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"].endswith("invalid-refresh-token")
    # The whole family is gone at once: the latest refresh token and the access tokens.
    assert (await refresh(http, second.refresh)).status_code == 401
    assert await me_status(http, second) == 401
    assert await me_status(http, first) == 401
    # Another session of the account is not part of the family.
    assert await me_status(http, elsewhere) == 200
    assert (await refresh(http, elsewhere.refresh)).status_code == 200

    sid = session_id(first)
    event = await db.fetchrow(
        "SELECT * FROM audit_events WHERE action = 'auth.refresh_reuse' AND target_id = $1", sid
    )
    assert event is not None
    assert event["outcome"] == "denied"
    assert event["actor_id"] == account.id
    assert event["request_id"] == reused.headers["x-request-id"]
    assert event["ip"] == "127.0.0.1"
    assert event["user_agent"].startswith("python-httpx/")
    revoked = await db.fetchrow(
        "SELECT revoked_at, revoked_reason FROM sessions WHERE id = $1", uuid.UUID(sid)
    )
    assert revoked is not None
    assert revoked["revoked_at"] is not None
    assert revoked["revoked_reason"] == "refresh_reuse"


async def test_an_unknown_or_malformed_refresh_token_is_refused(http: httpx.AsyncClient) -> None:
    unknown = await refresh(http, secrets.token_urlsafe(32))
    assert unknown.status_code == 401
    assert unknown.json()["type"].endswith("invalid-refresh-token")
    assert (await refresh(http, "short")).status_code == 422


# --- logout -----------------------------------------------------------------------------------


async def test_logout_ends_this_session_only(http: httpx.AsyncClient, accounts: Accounts) -> None:
    account, mine = await accounts.create_and_login()
    other = await accounts.login(account)
    response = await http.post("/v1/auth/logout", headers=mine.headers)
    assert response.status_code == 204
    assert await me_status(http, mine) == 401
    assert (await refresh(http, mine.refresh)).status_code == 401
    assert await me_status(http, other) == 200
    assert (await refresh(http, other.refresh)).status_code == 200
    # Logging out again with the dead token is refused, not an error.
    assert (await http.post("/v1/auth/logout", headers=mine.headers)).status_code == 401


async def test_logout_all_ends_every_session(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account, first = await accounts.create_and_login()
    others = [await accounts.login(account) for _ in range(2)]
    _, bystander = await accounts.create_and_login()
    response = await http.post("/v1/auth/logout-all", headers=first.headers)
    assert response.status_code == 204
    for tokens in (first, *others):
        assert await me_status(http, tokens) == 401
        assert (await refresh(http, tokens.refresh)).status_code == 401
    assert await me_status(http, bystander) == 200

    event = await audit_event(db, response)
    assert (event["action"], event["outcome"]) == ("auth.logout_all", "success")
    assert event["actor_id"] == account.id
    assert (event["target_type"], event["target_id"]) == ("user", str(account.id))
    assert event["ip"] == "127.0.0.1"


async def test_a_login_right_after_logout_all_gets_a_working_token(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    """logout-all revokes every token of the user issued before that instant; a login in the
    same clock second must still get an access token that works."""
    account, first = await accounts.create_and_login()
    # Start just after a second boundary, as any quick client would within that second.
    await asyncio.sleep(1.02 - time.time() % 1)
    assert (await http.post("/v1/auth/logout-all", headers=first.headers)).status_code == 204
    fresh = await accounts.login(account)
    assert await me_status(http, fresh) == 200


async def test_logout_needs_authentication(http: httpx.AsyncClient) -> None:
    assert (await http.post("/v1/auth/logout")).status_code == 401
    assert (await http.post("/v1/auth/logout-all")).status_code == 401
    assert (await http.get("/v1/auth/sessions")).status_code == 401


# --- sessions ---------------------------------------------------------------------------------


async def test_sessions_lists_live_sessions_with_current_flag_agent_and_ip(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    ip_a, ip_b = unique_ip(), unique_ip()
    a, _ = await login_from(app, account, ip=ip_a, user_agent="Agent-A/1.0")
    b, _ = await login_from(app, account, ip=ip_b, user_agent="Agent-B/2.0")
    ended, _ = await login_from(app, account, ip=unique_ip(), user_agent="Agent-C/3.0")
    assert (await http.post("/v1/auth/logout", headers=ended.headers)).status_code == 204

    response = await http.get("/v1/auth/sessions", headers=a.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    by_id = {s["id"]: s for s in data}
    assert set(by_id) == {session_id(a), session_id(b)}
    assert by_id[session_id(a)]["current"] is True
    assert by_id[session_id(b)]["current"] is False
    assert (by_id[session_id(a)]["user_agent"], by_id[session_id(a)]["ip"]) == ("Agent-A/1.0", ip_a)
    assert (by_id[session_id(b)]["user_agent"], by_id[session_id(b)]["ip"]) == ("Agent-B/2.0", ip_b)
    for session in data:
        assert session["created_at"]
        assert session["last_used_at"]
        assert session["expires_at"]

    seen_by_b = (await http.get("/v1/auth/sessions", headers=b.headers)).json()["data"]
    assert {s["id"]: s["current"] for s in seen_by_b} == {session_id(a): False, session_id(b): True}


async def test_deleting_a_session_revokes_it(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    account, mine = await accounts.create_and_login()
    other = await accounts.login(account)
    response = await http.delete(f"/v1/auth/sessions/{session_id(other)}", headers=mine.headers)
    assert response.status_code == 204
    event = await audit_event(db, response)
    assert (event["action"], event["outcome"]) == ("auth.session_revoked", "success")
    assert event["actor_id"] == account.id
    assert (event["target_type"], event["target_id"]) == ("session", session_id(other))
    assert event["ip"] == "127.0.0.1"
    assert await me_status(http, other) == 401
    assert (await refresh(http, other.refresh)).status_code == 401
    assert await me_status(http, mine) == 200
    listed = (await http.get("/v1/auth/sessions", headers=mine.headers)).json()["data"]
    assert [s["id"] for s in listed] == [session_id(mine)]
    # A revoked session is no longer there to delete.
    again = await http.delete(f"/v1/auth/sessions/{session_id(other)}", headers=mine.headers)
    assert again.status_code == 404


async def test_someone_elses_or_a_garbage_session_id_is_404(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, mine = await accounts.create_and_login()
    _, theirs = await accounts.create_and_login()
    response = await http.delete(f"/v1/auth/sessions/{session_id(theirs)}", headers=mine.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert await me_status(http, theirs) == 200
    assert (await refresh(http, theirs.refresh)).status_code == 200
    for garbage in ("not-a-uuid", str(uuid.uuid4()), "1", "%00"):
        garbage_response = await http.delete(f"/v1/auth/sessions/{garbage}", headers=mine.headers)
        assert garbage_response.status_code == 404, garbage
    assert (await http.delete(f"/v1/auth/sessions/{session_id(mine)}")).status_code == 401


async def test_housekeeping_wipes_sealed_successors_after_the_grace_window(
    http: httpx.AsyncClient, accounts: Accounts, app: HotpathApp, settings: Settings
) -> None:
    _, tokens = await accounts.create_and_login()
    rotated = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert rotated.status_code == 200
    conn = await asyncpg.connect(settings.database_url)
    try:
        sealed = "SELECT count(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL"
        assert await conn.fetchval(sealed) >= 1
        await conn.execute(
            "UPDATE refresh_tokens SET rotated_at = rotated_at - interval '1 hour'"
            " WHERE successor_sealed IS NOT NULL"
        )
        await app_container(app).auth.housekeeping()
        assert await conn.fetchval(sealed) == 0
    finally:
        await conn.close()
    # The old token is now plain reuse: it ends the session instead of replaying a successor.
    replay = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert replay.status_code == 401


@pytest.mark.parametrize("column", ["idle_expires_at", "expires_at"])
async def test_a_session_past_its_idle_timeout_or_lifetime_cannot_refresh(
    http: httpx.AsyncClient, accounts: Accounts, settings: Settings, column: str
) -> None:
    account, tokens = await accounts.create_and_login()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            f"UPDATE sessions SET {column} = now() - interval '1 second' WHERE user_id = $1",
            account.id,
        )
    finally:
        await conn.close()
    response = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert response.status_code == 401
    assert response.json()["type"] == "urn:hotpath:problem:invalid-refresh-token"
    listed = await http.get("/v1/auth/sessions", headers=tokens.headers)
    assert listed.json()["data"] == []


async def test_refreshing_slides_the_idle_timeout_but_never_the_lifetime(
    http: httpx.AsyncClient, accounts: Accounts, settings: Settings
) -> None:
    account, tokens = await accounts.create_and_login()
    conn = await asyncpg.connect(settings.database_url)
    try:
        query = "SELECT idle_expires_at, expires_at FROM sessions WHERE user_id = $1"
        before = await conn.fetchrow(query, account.id)
        await asyncio.sleep(0.05)
        response = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
        assert response.status_code == 200
        after = await conn.fetchrow(query, account.id)
    finally:
        await conn.close()
    assert before is not None
    assert after is not None
    assert after["idle_expires_at"] > before["idle_expires_at"]
    assert after["expires_at"] == before["expires_at"]
