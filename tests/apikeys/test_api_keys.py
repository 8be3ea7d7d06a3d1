"""API keys through HTTP: issue (secret shown once), authenticate (Bearer or X-API-Key), scope
enforcement on every permission route, session-only routes, demotion, expiry, checksum, cache,
revocation, rotation with a grace period, batched usage, rate tier, pagination, and no secret
in any log line, audit row or later response."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import io
import re
import secrets
import time
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.routes import build_routes
from server.runtime.logs import flush_logs
from server.runtime.settings import Settings
from server.web.access import AccessKind, GuardedRoute
from server.web.state import app_container
from tests.fixtures.identity import Accounts, Tokens
from tests.fixtures.recipes import RECIPES, Call
from tests.fixtures.support import client_for, lifespan

PROBLEM = "urn:hotpath:problem:"
KEY_SHAPE = re.compile(r"hp_([0-9A-Za-z]{12})_[0-9A-Za-z]{38}")
GRACE = 2  # seconds the previous secret keeps working after a rotation (this module)
ME = "/v1/users/me"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, apikey_rotation_grace_seconds=GRACE)


# --- helpers ----------------------------------------------------------------------------------


def _routes(kind: AccessKind) -> list[tuple[str, str, str | None]]:
    """(method, path template, permission) of every route with this access kind."""
    rows: list[tuple[str, str, str | None]] = []
    for route in build_routes(lambda: b"{}"):
        if isinstance(route, GuardedRoute) and route.access.kind is kind:
            methods = sorted((route.methods or set()) - {"HEAD"})
            rows.extend((m, route.path, route.access.permission) for m in methods)
    return rows


PERMISSION_ROUTES = [(m, p, needed) for m, p, needed in _routes(AccessKind.PERMISSION) if needed]
SESSION_ROUTES = [(m, p) for m, p, _ in _routes(AccessKind.SESSION)]


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def x_api_key(secret: str) -> dict[str, str]:
    return {"x-api-key": secret}


def concrete(path: str, **values: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "1"), path)


def typo(secret: str, position: int) -> str:
    """The key with one character changed (to another base62 character)."""
    replacement = "7" if secret[position] != "7" else "8"
    return secret[:position] + replacement + secret[position + 1 :]


async def new_key(
    http: httpx.AsyncClient, owner: Tokens, *, scopes: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"name": "test key", "scopes": scopes or [], **extra}
    response = await http.post("/v1/api-keys", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def admin_permissions(app: HotpathApp) -> list[str]:
    async with app_container(app).db.connection() as conn:
        permissions = await conn.fetchval("SELECT permissions FROM roles WHERE name = 'admin'")
    return sorted(permissions)


async def audit_of(app: HotpathApp, key_id: str) -> list[dict[str, Any]]:
    async with app_container(app).db.connection() as conn:
        rows = await conn.fetch(
            "SELECT action, outcome, actor_id, details::text AS details, ip,"
            " user_agent, request_id FROM audit_events"
            " WHERE target_type = 'apikey' AND target_id = $1 ORDER BY id",
            key_id,
        )
    return [{**dict(r), "details": orjson.loads(r["details"])} for r in rows]


class Spy:
    """Counts the calls of a method of one object (sync or async: the result is passed on)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.calls: list[tuple[Any, ...]] = []
        original = getattr(target, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, spy)


def _seconds_until(moment: dt.datetime) -> float:
    return max(0.0, (moment - dt.datetime.now(dt.UTC)).total_seconds())


# --- create, authenticate ----------------------------------------------------------------------


async def test_create_shows_the_secret_once_and_both_headers_authenticate(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner, tokens = await accounts.create_and_login("customer")
    response = await http.post("/v1/api-keys", json={"name": "ci"}, headers=tokens.headers)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    secret = body["key"]
    match = KEY_SHAPE.fullmatch(secret)
    assert match is not None
    assert match.group(1) == body["id"]
    assert body["user_id"] == owner.id
    assert body["scopes"] == []
    assert body["rate_tier"] == "standard"
    assert body["request_count"] == 0
    assert body["revoked_at"] is None

    for headers in (bearer(secret), x_api_key(secret)):
        me = await http.get(ME, headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["id"] == owner.id
    # A customer's key with no scopes is no way into a permission route.
    assert (await http.get("/v1/users", headers=bearer(secret))).status_code == 403

    listed = await http.get("/v1/api-keys", headers=tokens.headers)
    one = await http.get(f"/v1/api-keys/{body['id']}", headers=tokens.headers)
    for later in (listed, one):
        assert later.status_code == 200, later.text
        assert secret not in later.text
        assert secret[16:48] not in later.text  # nor the secret part alone
    assert [k["id"] for k in listed.json()["data"]] == [body["id"]]
    assert "key" not in listed.json()["data"][0]
    assert "key" not in one.json()


async def test_scopes_must_be_permissions_the_owner_holds(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, customer = await accounts.create_and_login("customer")
    _, staff = await accounts.create_and_login("staff")
    _, admin = await accounts.create_and_login("admin")
    refused = [
        (customer, ["users:read"]),
        (staff, ["users:read", "users:write"]),
        (admin, ["nothing:here"]),
    ]
    for tokens, scopes in refused:
        response = await http.post(
            "/v1/api-keys", json={"name": "k", "scopes": scopes}, headers=tokens.headers
        )
        assert response.status_code == 422, (scopes, response.text)
        assert response.json()["type"] == PROBLEM + "validation-failed"
    assert (await new_key(http, staff, scopes=["users:read"]))["scopes"] == ["users:read"]
    every = await admin_permissions(app)
    assert (await new_key(http, admin, scopes=every))["scopes"] == every
    duplicated = await new_key(http, admin, scopes=["users:read", "users:read"])
    assert duplicated["scopes"] == ["users:read"]


async def test_expires_at_must_be_a_future_instant_with_a_time_zone(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    for expires_at in (past, "2099-01-01T00:00:00"):  # the second has no time zone
        response = await http.post(
            "/v1/api-keys", json={"name": "k", "expires_at": expires_at}, headers=tokens.headers
        )
        assert response.status_code == 422, (expires_at, response.status_code, response.text)


async def test_session_routes_refuse_api_keys(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    key = await new_key(http, admin, scopes=await admin_permissions(app))
    assert len(SESSION_ROUTES) >= 10
    wrong: list[str] = []
    for index, (method, path) in enumerate(SESSION_ROUTES):
        headers = bearer(key["key"]) if index % 2 else x_api_key(key["key"])
        url = concrete(path, key_id=key["id"])
        body = {"name": "k"} if path == "/v1/api-keys" else {}
        response = await http.request(method, url, json=body, headers=headers)
        if response.status_code != 403 or response.json()["type"] != PROBLEM + "forbidden":
            wrong.append(f"{method} {path}: {response.status_code} {response.text[:120]}")
    assert wrong == []
    # None of those calls did anything: still one key, unrotated, working.
    listed = (await http.get("/v1/api-keys", headers=admin.headers)).json()["data"]
    assert [(k["id"], k["rotated_at"], k["revoked_at"]) for k in listed] == [
        (key["id"], None, None)
    ]
    assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200


# --- scope enforcement on every permission route ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    PERMISSION_ROUTES,
    ids=[f"{m} {p}" for m, p, _ in PERMISSION_ROUTES],
)
async def test_a_key_needs_the_scope_of_every_permission_route(
    app: HotpathApp,
    http: httpx.AsyncClient,
    accounts: Accounts,
    method: str,
    path: str,
    needed: str,
) -> None:
    _, admin = await accounts.create_and_login("admin")
    every = await admin_permissions(app)
    assert needed in every
    without = await new_key(http, admin, scopes=[s for s in every if s != needed])
    with_it = await new_key(http, admin, scopes=every)
    recipe = RECIPES.get((method, path))

    async def call() -> Call:
        if recipe is not None:
            return await recipe(accounts)
        return Call(concrete(path), {} if method in ("POST", "PUT", "PATCH") else None)

    first = await call()
    refused = await http.request(
        method,
        first.url,
        json=first.json,
        headers={**bearer(without["key"]), **(first.headers or {})},
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == PROBLEM + "forbidden"
    assert needed in refused.json()["detail"]

    second = await call()
    allowed = await http.request(
        method,
        second.url,
        json=second.json,
        headers={**bearer(with_it["key"]), **(second.headers or {})},
    )
    assert allowed.status_code not in (401, 403), allowed.text
    if recipe is not None:
        assert allowed.is_success, allowed.text


# --- the owner's standing now, not at issue time ----------------------------------------------


async def test_demoting_the_owner_demotes_a_cached_key_at_once(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner, owner_tokens = await accounts.create_and_login("admin")
    _, other_admin = await accounts.create_and_login("admin")
    key = await new_key(http, owner_tokens, scopes=["users:read"])
    headers = bearer(key["key"])
    for _ in range(2):  # the second answer comes from the cache
        assert (await http.get("/v1/users?limit=1", headers=headers)).status_code == 200

    demoted = await http.delete(f"/v1/users/{owner.id}/roles/admin", headers=other_admin.headers)
    assert demoted.status_code == 200, demoted.text

    refused = await http.get("/v1/users?limit=1", headers=headers)
    assert refused.status_code == 403, refused.text
    assert (await http.get(ME, headers=headers)).status_code == 200  # still the owner's key


async def test_a_role_losing_a_permission_demotes_its_holders_keys_and_tokens(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    role = f"desk-{secrets.token_hex(4)}"
    made = await http.post(
        "/v1/roles", json={"name": role, "permissions": ["users:read"]}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    _, tokens = await accounts.create_and_login(role)
    _, bystander = await accounts.create_and_login("admin")
    key = await new_key(http, tokens, scopes=["users:read"])
    for _ in range(2):  # the second answer comes from the key cache
        assert (await http.get("/v1/users?limit=1", headers=bearer(key["key"]))).status_code == 200
    assert (await http.get("/v1/users?limit=1", headers=tokens.headers)).status_code == 200

    # Gaining a permission cuts nothing off.
    grown = await http.patch(
        f"/v1/roles/{role}",
        json={"permissions": ["users:read", "audit:read"]},
        headers=admin.headers,
    )
    assert grown.status_code == 200, grown.text
    assert (await http.get("/v1/users?limit=1", headers=tokens.headers)).status_code == 200

    # Tokens carry whole-second iat and the cut-off is the change's whole second (so a refresh
    # right after it works): a token from the very second of the change would slip through.
    await asyncio.sleep(1.02 - time.time() % 1)
    shrunk = await http.patch(
        f"/v1/roles/{role}", json={"permissions": ["audit:read"]}, headers=admin.headers
    )
    assert shrunk.status_code == 200, shrunk.text

    refused = await http.get("/v1/users?limit=1", headers=bearer(key["key"]))
    assert refused.status_code == 403, refused.text
    assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200  # still a key
    # The holder's access token carried the lost permission: it is refused; a refresh gets one
    # with the role's permissions as they are now.
    assert (await http.get(ME, headers=tokens.headers)).status_code == 401
    refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert refreshed.status_code == 200, refreshed.text
    fresh = {"authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await http.get("/v1/users?limit=1", headers=fresh)).status_code == 403
    assert (await http.get("/v1/audit-events?limit=1", headers=fresh)).status_code == 200
    # Users without the role are untouched.
    assert (await http.get(ME, headers=bystander.headers)).status_code == 200


async def test_disabling_the_owner_refuses_the_key(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner, owner_tokens = await accounts.create_and_login("admin")
    _, other_admin = await accounts.create_and_login("admin")
    key = await new_key(http, owner_tokens, scopes=["users:read"])
    assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200

    disabled = await http.patch(
        f"/v1/users/{owner.id}", json={"status": "disabled"}, headers=other_admin.headers
    )
    assert disabled.status_code == 200, disabled.text
    refused = await http.get(ME, headers=bearer(key["key"]))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


# --- expiry, checksum, cache ------------------------------------------------------------------


async def test_a_key_works_until_it_expires_then_is_refused_and_audited(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.2)
    key = await new_key(http, tokens, expires_at=expires.isoformat())
    assert dt.datetime.fromisoformat(key["expires_at"]) == expires
    assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200
    assert (await http.get(ME, headers=x_api_key(key["key"]))).status_code == 200

    await asyncio.sleep(_seconds_until(expires) + 0.05)
    request_ids = []
    for headers in (bearer(key["key"]), x_api_key(key["key"])):
        refused = await http.get(ME, headers={**headers, "user-agent": "presenter/1.0"})
        assert refused.status_code == 401, refused.text
        assert refused.json()["type"] == PROBLEM + "invalid-api-key"
        # The client sent a key, not a token: the answer names what it sent.
        assert refused.json()["detail"].startswith("The API key is invalid, expired or revoked")
        request_ids.append(refused.headers["x-request-id"])

    rejected = [e for e in await audit_of(app, key["id"]) if e["action"] == "apikey.rejected"]
    assert rejected, "no apikey.rejected audit event"
    assert rejected[0]["details"]["reason"] == "expired"
    assert rejected[0]["outcome"] == "denied"
    # Who presented it: the client's address, user agent and request id.
    assert rejected[0]["ip"] == "127.0.0.1"
    assert rejected[0]["user_agent"] == "presenter/1.0"
    assert rejected[0]["request_id"] == request_ids[0]  # one event a minute per key
    assert len(rejected) == 1


async def test_a_mistyped_key_is_refused_without_a_database_lookup(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    secret = (await new_key(http, tokens))["key"]
    lookups = Spy(monkeypatch, app_container(app).key_verifier.keys, "credentials")
    # One character changed in the id, in the secret, in the checksum.
    for position in (5, 30, len(secret) - 1):
        mistyped = typo(secret, position)
        for headers in (bearer(mistyped), x_api_key(mistyped)):
            response = await http.get(ME, headers=headers)
            assert response.status_code == 401, (position, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["type"] == PROBLEM + "invalid-api-key"
            assert "API key" in response.json()["detail"]
            assert "access token" not in response.json()["detail"]
    assert lookups.calls == []
    assert (await http.get(ME, headers=bearer(secret))).status_code == 200
    assert len(lookups.calls) == 1


async def test_a_verified_key_is_answered_from_the_cache(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    secret = (await new_key(http, tokens))["key"]
    lookups = Spy(monkeypatch, app_container(app).key_verifier.keys, "credentials")
    for headers in (bearer(secret), bearer(secret), x_api_key(secret), bearer(secret)):
        assert (await http.get(ME, headers=headers)).status_code == 200
    assert len(lookups.calls) == 1


# --- revocation -------------------------------------------------------------------------------


async def test_revoke_is_immediate_idempotent_and_private_to_the_owner(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner, tokens = await accounts.create_and_login("customer")
    _, stranger = await accounts.create_and_login("staff")  # users:read, not apikeys:write
    key = await new_key(http, tokens)
    headers = bearer(key["key"])
    assert (await http.get(ME, headers=headers)).status_code == 200  # cached now

    where = f"/v1/api-keys/{key['id']}"
    assert (await http.get(where, headers=stranger.headers)).status_code == 404
    assert (await http.delete(where, headers=stranger.headers)).status_code == 404
    assert (await http.post(where + "/rotate", headers=stranger.headers)).status_code == 404
    for query in ("?all=true", f"?user_id={owner.id}"):
        response = await http.get("/v1/api-keys" + query, headers=stranger.headers)
        assert response.status_code == 403, (query, response.text)
    assert (await http.get(ME, headers=headers)).status_code == 200

    assert (await http.delete(where, headers=tokens.headers)).status_code == 204
    refused = await http.get(ME, headers=headers)
    assert refused.status_code == 401, refused.text
    assert (await http.delete(where, headers=tokens.headers)).status_code == 204  # idempotent
    shown = (await http.get(where, headers=tokens.headers)).json()
    assert shown["revoked_at"] is not None
    assert (await http.post(where + "/rotate", headers=tokens.headers)).status_code == 404
    assert (
        await http.delete("/v1/api-keys/nosuchkey123", headers=tokens.headers)
    ).status_code == 404

    events = await audit_of(app, key["id"])
    actions = [e["action"] for e in events]
    assert actions.count("apikey.revoked") == 1, actions
    assert any(
        e["action"] == "apikey.rejected" and e["details"]["reason"] == "revoked" for e in events
    ), events


async def test_an_admin_lists_and_revokes_anyones_keys(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    owner, tokens = await accounts.create_and_login("customer")
    admin_account, admin = await accounts.create_and_login("admin")
    key = await new_key(http, tokens)
    assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200

    by_owner = await http.get(f"/v1/api-keys?user_id={owner.id}", headers=admin.headers)
    assert by_owner.status_code == 200, by_owner.text
    assert [k["id"] for k in by_owner.json()["data"]] == [key["id"]]
    assert key["key"] not in by_owner.text

    found: list[str] = []
    url: str | None = "/v1/api-keys?all=true&limit=100"
    while url is not None:
        page = await http.get(url, headers=admin.headers)
        assert page.status_code == 200, page.text
        found += [k["id"] for k in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        url = f"/v1/api-keys?all=true&limit=100&cursor={cursor}" if cursor else None
    assert key["id"] in found
    assert len(found) == len(set(found))

    where = f"/v1/api-keys/{key['id']}"
    assert (await http.get(where, headers=admin.headers)).json()["user_id"] == owner.id
    assert (await http.delete(where, headers=admin.headers)).status_code == 204
    assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 401
    revoked = [e for e in await audit_of(app, key["id"]) if e["action"] == "apikey.revoked"]
    assert len(revoked) == 1
    assert revoked[0]["actor_id"] == admin_account.id
    assert revoked[0]["details"]["owner_id"] == owner.id


# --- rotation ---------------------------------------------------------------------------------


async def test_rotation_keeps_the_old_secret_for_the_grace_period_then_stops(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    key = await new_key(http, tokens)
    old = key["key"]
    where = f"/v1/api-keys/{key['id']}"
    before = dt.datetime.now(dt.UTC)
    rotated = await http.post(where + "/rotate", headers=tokens.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    body = rotated.json()
    new = body["key"]
    match = KEY_SHAPE.fullmatch(new)
    assert new != old
    assert match is not None
    assert match.group(1) == key["id"]
    assert body["rotated_at"] is not None
    grace_end = dt.datetime.fromisoformat(body["previous_key_valid_until"])
    assert abs((grace_end - before).total_seconds() - GRACE) < 1.0

    for secret in (new, old, new, old):  # both work during the grace period
        assert (await http.get(ME, headers=bearer(secret))).status_code == 200

    await asyncio.sleep(_seconds_until(grace_end) + 0.1)
    assert (await http.get(ME, headers=bearer(old))).status_code == 401
    assert (await http.get(ME, headers=x_api_key(old))).status_code == 401
    assert (await http.get(ME, headers=bearer(new))).status_code == 200
    assert (await http.delete(where, headers=tokens.headers)).status_code == 204

    events = await audit_of(app, key["id"])
    actions = [e["action"] for e in events]
    assert [a for a in actions if a != "apikey.rejected"] == [
        "apikey.created",
        "apikey.rotated",
        "apikey.revoked",
    ]
    rejected = [e["details"]["reason"] for e in events if e["action"] == "apikey.rejected"]
    assert rejected == ["rotated_out"]


async def test_an_old_secret_cached_before_rotation_stops_after_the_grace_period(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    key = await new_key(http, tokens)
    old = key["key"]
    assert (await http.get(ME, headers=bearer(old))).status_code == 200  # cached here
    rotated = await http.post(f"/v1/api-keys/{key['id']}/rotate", headers=tokens.headers)
    assert rotated.status_code == 200, rotated.text
    grace_end = dt.datetime.fromisoformat(rotated.json()["previous_key_valid_until"])
    assert _seconds_until(grace_end) <= GRACE
    assert (await http.get(ME, headers=bearer(old))).status_code == 200

    await asyncio.sleep(_seconds_until(grace_end) + 0.1)
    refused = await http.get(ME, headers=bearer(old))
    assert refused.status_code == 401, "the rotated-out secret still works from the cache"


# --- usage, rate tier, pagination -------------------------------------------------------------


async def test_usage_is_counted_and_written_in_one_batch(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    key = await new_key(http, tokens)
    verifier = app_container(app).key_verifier
    writes = Spy(monkeypatch, verifier.keys, "record_usage")
    requests = 12
    for index in range(requests):
        headers = bearer(key["key"]) if index % 2 else x_api_key(key["key"])
        assert (await http.get(ME, headers=headers)).status_code == 200
    await verifier.flush_usage()

    mine = [call for call in writes.calls if key["id"] in call[1]]
    # One statement per flush (the 1 s timer may have fired once during the loop), never one per
    # request, and the batches add up to every request.
    assert 1 <= len(mine) <= 2, len(mine)
    assert sum(call[2][call[1].index(key["id"])] for call in mine) == requests

    where = f"/v1/api-keys/{key['id']}"
    shown: dict[str, Any] = {}
    for _ in range(20):  # a background flush may still be committing
        shown = (await http.get(where, headers=tokens.headers)).json()
        if shown["request_count"] == requests:
            break
        await asyncio.sleep(0.05)
    assert shown["request_count"] == requests
    assert shown["last_used_at"] is not None
    last_used = dt.datetime.fromisoformat(shown["last_used_at"])
    assert last_used >= dt.datetime.fromisoformat(key["created_at"])
    assert last_used <= dt.datetime.now(dt.UTC)


async def test_the_rate_tier_is_stored_and_high_needs_apikeys_write(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, customer = await accounts.create_and_login("customer")
    _, staff = await accounts.create_and_login("staff")
    _, admin = await accounts.create_and_login("admin")
    for tokens in (customer, staff):
        response = await http.post(
            "/v1/api-keys", json={"name": "k", "rate_tier": "high"}, headers=tokens.headers
        )
        assert response.status_code == 403, response.text
    bogus = await http.post(
        "/v1/api-keys", json={"name": "k", "rate_tier": "ultra"}, headers=admin.headers
    )
    assert bogus.status_code == 422
    assert (await new_key(http, customer))["rate_tier"] == "standard"
    high = await new_key(http, admin, rate_tier="high")
    assert high["rate_tier"] == "high"
    shown = await http.get(f"/v1/api-keys/{high['id']}", headers=admin.headers)
    assert shown.json()["rate_tier"] == "high"
    listed = await http.get("/v1/api-keys", headers=admin.headers)
    assert [k["rate_tier"] for k in listed.json()["data"]] == ["high"]


async def test_keys_are_listed_page_by_page_with_a_cursor(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    _, other = await accounts.create_and_login("customer")
    await new_key(http, other)  # someone else's: never listed
    created = [(await new_key(http, tokens, name=f"k{i}"))["id"] for i in range(5)]

    seen: list[str] = []
    pages = 0
    url: str | None = "/v1/api-keys?limit=2"
    while url is not None:
        response = await http.get(url, headers=tokens.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["data"]) <= 2
        seen += [k["id"] for k in body["data"]]
        cursor = body["next_cursor"]
        if cursor:
            assert 'rel="next"' in response.headers["link"]
            url = f"/v1/api-keys?limit=2&cursor={cursor}"
        else:
            assert "link" not in response.headers
            url = None
    assert seen == created
    assert pages == 3
    bad = await http.get("/v1/api-keys?cursor=bm90LWEtY3Vyc29y", headers=tokens.headers)
    assert bad.status_code == 400


# --- secrets never leak -----------------------------------------------------------------------


async def test_no_key_secret_reaches_a_log_line_an_audit_row_or_a_later_response(
    app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts, log_stream: io.BytesIO
) -> None:
    _, admin = await accounts.create_and_login("admin")
    key = await new_key(http, admin, scopes=["users:read"])
    first = key["key"]
    later: list[httpx.Response] = []

    async def call(method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        response = await http.request(method, url, headers=headers)
        later.append(response)
        return response

    assert (await call("GET", ME, bearer(first))).status_code == 200
    assert (await call("GET", "/v1/users?limit=1", x_api_key(first))).status_code == 200
    assert (await call("GET", "/v1/audit-events", bearer(first))).status_code == 403
    assert (await call("GET", ME, bearer(typo(first, 30)))).status_code == 401
    assert (await call("GET", "/v1/api-keys", bearer(first))).status_code == 403
    rotated = await http.post(f"/v1/api-keys/{key['id']}/rotate", headers=admin.headers)
    assert rotated.status_code == 200
    second = rotated.json()["key"]
    assert (await call("GET", ME, bearer(second))).status_code == 200
    assert (await call("GET", ME, x_api_key(first))).status_code == 200  # grace period
    await call("GET", "/v1/api-keys", admin.headers)
    await call("GET", f"/v1/api-keys/{key['id']}", admin.headers)
    await call("GET", "/v1/api-keys?all=true", admin.headers)
    assert (await call("DELETE", f"/v1/api-keys/{key['id']}", admin.headers)).status_code == 204
    assert (await call("GET", ME, bearer(first))).status_code == 401
    assert (await call("GET", ME, x_api_key(second))).status_code == 401
    await app_container(app).key_verifier.flush_usage()

    flush_logs()
    log_text = log_stream.getvalue().decode("utf-8", "replace")
    assert '"http_request"' in log_text  # the access log was captured
    async with app_container(app).db.connection() as conn:
        audit_text = await conn.fetchval(
            "SELECT string_agg(concat_ws('|', action, target_id, user_agent, request_id,"
            " details::text), E'\\n') FROM audit_events"
        )
    assert key["id"] in audit_text
    for secret in (first, second):
        for value in (secret, secret[16:48], hashlib.sha256(secret.encode()).hexdigest()):
            assert value not in log_text, "a key secret reached the logs"
            assert value not in audit_text, "a key secret reached the audit trail"
            for response in later:
                assert value not in response.text, (response.request.url, response.text)
                assert value not in str(response.headers), response.request.url


# --- configuration edge: cache lifetime longer than the revocation's ---------------------------


async def test_a_revoked_key_stays_refused_for_the_whole_cache_lifetime(
    settings: Settings, logger: FilteringBoundLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both within the documented ranges (HOTPATH_ACCESS_TOKEN_TTL 60..900,
    # HOTPATH_APIKEY_CACHE_SECONDS 1..600): a key may stay cached longer than a revocation row
    # lives (access-token TTL + 30 s), after which the denylist forgets it.
    config = dataclasses.replace(settings, access_token_ttl=60, apikey_cache_seconds=600)
    app = create_app(config, logger=logger)
    async with lifespan(app), client_for(app) as http:
        accounts = Accounts(app, http)
        try:
            _, tokens = await accounts.create_and_login("customer")
            key = await new_key(http, tokens)
            verifier = app_container(app).key_verifier
            skew = [0.0]
            monkeypatch.setattr(verifier, "clock", lambda: time.time() + skew[0])
            assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200
            where = f"/v1/api-keys/{key['id']}"
            assert (await http.delete(where, headers=tokens.headers)).status_code == 204
            # The key is not presented here again for a while (an idle replica: a refusal
            # would evict it from the cache). Two minutes on, well inside the 600 s cache
            # lifetime, the revocation feed's periodic prune drops the 90 s revocation row.
            skew[0] = 120.0
            app_container(app).revocations.denylist.prune(time.time() + skew[0])
            refused = await http.get(ME, headers=bearer(key["key"]))
            assert refused.status_code == 401, "a revoked key works again from the cache"
        finally:
            accounts.hasher.close()


async def test_x_api_key_carries_only_api_keys_never_a_session_token(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    smuggled = await http.get("/v1/users/me", headers={"x-api-key": tokens.access})
    assert smuggled.status_code == 401
    assert smuggled.json()["type"] == PROBLEM + "invalid-api-key"
    assert "X-API-Key" in smuggled.json()["detail"]
    assert (await http.get("/v1/users/me", headers=tokens.headers)).status_code == 200


async def test_usage_reaches_the_database_within_a_second_or_so_by_itself(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    """No flush called here: the once-a-second background flush must write it."""
    _, tokens = await accounts.create_and_login("customer")
    key = await new_key(http, tokens)
    for _ in range(3):
        assert (await http.get(ME, headers=bearer(key["key"]))).status_code == 200
    where = f"/v1/api-keys/{key['id']}"
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < 3.0:
        count = (await http.get(where, headers=tokens.headers)).json()["request_count"]
        if count == 3:
            break
        await asyncio.sleep(0.1)
    assert count == 3
    assert time.monotonic() - started < 2.5


async def test_only_the_sha256_of_a_key_is_stored(
    http: httpx.AsyncClient, accounts: Accounts, settings: Settings
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    key = await new_key(http, tokens)
    rotated = await http.post(f"/v1/api-keys/{key['id']}/rotate", headers=tokens.headers)
    assert rotated.status_code == 200, rotated.text
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", key["id"])
        dumped = await conn.fetchval(
            "SELECT row_to_json(k)::text FROM api_keys k WHERE id = $1", key["id"]
        )
    finally:
        await conn.close()
    assert row is not None
    assert bytes(row["secret_hash"]) == hashlib.sha256(rotated.json()["key"].encode()).digest()
    assert bytes(row["previous_secret_hash"]) == hashlib.sha256(key["key"].encode()).digest()
    for secret in (key["key"], rotated.json()["key"]):
        assert secret.rsplit("_", 1)[1][:20] not in dumped
