"""Roles (/v1/roles) and the audit trail (/v1/audit-events), through HTTP."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import httpx
import jwt

from server.auth.permissions import KNOWN_PERMISSIONS
from tests.fixtures.identity import Accounts, Tokens
from tests.fixtures.support import problem_type

INT64_MAX = 2**63 - 1


def _role_name() -> str:
    return f"r-{secrets.token_hex(5)}"


def _perms(tokens: Tokens) -> set[str]:
    claims = jwt.decode(tokens.access, options={"verify_signature": False})
    return set(claims["perms"])


async def _roles(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await http.get("/v1/roles", headers=headers)
    assert response.status_code == 200, response.text
    return {r["name"]: r for r in response.json()["data"]}


async def _events(
    http: httpx.AsyncClient, headers: dict[str, str], **params: str | int
) -> list[dict[str, Any]]:
    response = await http.get("/v1/audit-events", params={"limit": 100, **params}, headers=headers)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events


# --- roles -----------------------------------------------------------------------------------


async def test_the_seeded_roles_and_their_permissions(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, staff = await accounts.create_and_login("staff")
    roles = await _roles(http, staff.headers)  # users:read is enough to list roles
    assert set(roles["admin"]["permissions"]) == KNOWN_PERMISSIONS
    assert set(roles["staff"]["permissions"]) == {
        "users:read",
        "audit:read",
        "products:write",
        "orders:read_all",
        "orders:write_all",
    }
    assert roles["customer"]["permissions"] == []
    assert all(r["description"] for r in (roles["admin"], roles["staff"], roles["customer"]))


async def test_create_a_role(http: httpx.AsyncClient, accounts: Accounts) -> None:
    actor, admin = await accounts.create_and_login("admin")
    name = _role_name()
    body = {"name": name, "description": "Support desk", "permissions": ["users:read"]}

    created = await http.post("/v1/roles", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.json() == body
    assert (await _roles(http, admin.headers))[name] == body

    duplicate = await http.post(
        "/v1/roles", json={**body, "permissions": ["audit:read"]}, headers=admin.headers
    )
    assert duplicate.status_code == 409, duplicate.text
    assert problem_type(duplicate) == "role-exists"
    assert (await _roles(http, admin.headers))[name]["permissions"] == ["users:read"]

    [event] = await _events(http, admin.headers, action="role.created", target_id=name)
    assert (event["actor_id"], event["target_type"]) == (actor.id, "role")
    assert event["details"] == {"permissions": ["users:read"]}


async def test_creating_a_role_validates_it(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    name = _role_name()
    unknown = await http.post(
        "/v1/roles",
        json={"name": name, "permissions": ["users:read", "users:delete_everything"]},
        headers=admin.headers,
    )
    assert unknown.status_code == 422, unknown.text
    assert problem_type(unknown) == "validation-failed"
    assert unknown.json()["errors"][0]["pointer"] == "/permissions"
    assert "users:delete_everything" in unknown.json()["errors"][0]["detail"]
    assert name not in await _roles(http, admin.headers)

    for bad in ({"name": "Admin2", "permissions": []}, {"name": "x", "permissions": []}, {}):
        response = await http.post("/v1/roles", json=bad, headers=admin.headers)
        assert response.status_code == 422, (bad, response.text)


async def test_patch_a_role(http: httpx.AsyncClient, accounts: Accounts) -> None:
    actor, admin = await accounts.create_and_login("admin")
    name = _role_name()
    created = await http.post(
        "/v1/roles",
        json={"name": name, "description": "before", "permissions": ["users:read"]},
        headers=admin.headers,
    )
    assert created.status_code == 201

    patched = await http.patch(
        f"/v1/roles/{name}",
        json={"permissions": ["audit:read", "users:read"]},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {
        "name": name,
        "description": "before",  # left as it was
        "permissions": ["audit:read", "users:read"],
    }
    described = await http.patch(
        f"/v1/roles/{name}",
        json={"permissions": [], "description": "after"},
        headers=admin.headers,
    )
    assert described.status_code == 200
    assert (await _roles(http, admin.headers))[name] == {
        "name": name,
        "description": "after",
        "permissions": [],
    }

    unknown = await http.patch(
        f"/v1/roles/{name}", json={"permissions": ["root"]}, headers=admin.headers
    )
    assert unknown.status_code == 422, unknown.text
    missing = await http.patch(
        f"/v1/roles/{_role_name()}", json={"permissions": []}, headers=admin.headers
    )
    assert missing.status_code == 404, missing.text

    events = await _events(http, admin.headers, action="role.updated", target_id=name)
    assert [e["details"]["permissions"] for e in events] == [[], ["audit:read", "users:read"]]
    assert {e["actor_id"] for e in events} == {actor.id}


async def test_a_new_role_grants_its_permissions_at_the_next_login(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    name = _role_name()
    created = await http.post(
        "/v1/roles", json={"name": name, "permissions": ["audit:read"]}, headers=admin.headers
    )
    assert created.status_code == 201
    user, before = await accounts.create_and_login("customer")
    assert (await http.get("/v1/audit-events", headers=before.headers)).status_code == 403

    granted = await http.put(f"/v1/users/{user.id}/roles/{name}", headers=admin.headers)
    assert granted.status_code == 200, granted.text
    assert (await http.get("/v1/audit-events", headers=before.headers)).status_code == 403

    after = await accounts.login(user)
    assert _perms(after) == {"audit:read"}
    assert (await http.get("/v1/audit-events", headers=after.headers)).status_code == 200
    assert (await http.get("/v1/users", headers=after.headers)).status_code == 403

    # Changing the role's permissions shows in the next token too.
    patched = await http.patch(
        f"/v1/roles/{name}", json={"permissions": ["users:read"]}, headers=admin.headers
    )
    assert patched.status_code == 200
    latest = await accounts.login(user)
    assert _perms(latest) == {"users:read"}
    assert (await http.get("/v1/users?limit=1", headers=latest.headers)).status_code == 200
    assert (await http.get("/v1/audit-events", headers=latest.headers)).status_code == 403


# --- audit events ----------------------------------------------------------------------------


async def _history(http: httpx.AsyncClient, accounts: Accounts) -> dict[str, Any]:
    """Two admins act on one target; returns who did what, in the order it happened."""
    first, first_tokens = await accounts.create_and_login("admin")
    second, second_tokens = await accounts.create_and_login("admin")
    target = await accounts.create("customer")
    url = f"/v1/users/{target.id}"
    steps = [
        (first_tokens, "PUT", f"{url}/roles/staff", None, "user.role_granted"),
        (first_tokens, "PATCH", url, {"status": "disabled"}, "user.status_changed"),
        (second_tokens, "PATCH", url, {"status": "active"}, "user.status_changed"),
        (first_tokens, "DELETE", f"{url}/roles/staff", None, "user.role_revoked"),
        (second_tokens, "PUT", f"{url}/roles/staff", None, "user.role_granted"),
        (first_tokens, "PATCH", url, {"status": "disabled"}, "user.status_changed"),
        (second_tokens, "DELETE", f"{url}/roles/staff", None, "user.role_revoked"),
    ]
    done = []
    for tokens, method, path, body, action in steps:
        response = await http.request(method, path, json=body, headers=tokens.headers)
        assert response.status_code == 200, response.text
        actor = first.id if tokens is first_tokens else second.id
        done.append((action, actor))
    return {
        "first": first.id,
        "second": second.id,
        "target": str(target.id),
        "headers": first_tokens.headers,
        "done": done,
    }


async def test_audit_events_filters_and_order(http: httpx.AsyncClient, accounts: Accounts) -> None:
    h = await _history(http, accounts)
    headers, target = h["headers"], h["target"]

    events = await _events(http, headers, target_type="user", target_id=target)
    assert [(e["action"], e["actor_id"]) for e in events] == h["done"][::-1]  # newest first
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    stamps = [e["occurred_at"] for e in events]
    assert stamps == sorted(stamps, reverse=True)

    by_second = await _events(
        http, headers, actor_id=h["second"], target_type="user", target_id=target
    )
    assert [e["action"] for e in by_second] == [
        "user.role_revoked",
        "user.role_granted",
        "user.status_changed",
    ]
    # An actor's own logins are theirs too; with no target filter the list mixes both.
    assert {e["actor_id"] for e in await _events(http, headers, actor_id=h["second"])} == {
        h["second"]
    }
    granted = await _events(http, headers, action="user.role_granted", target_id=target)
    assert [e["actor_id"] for e in granted] == [h["second"], h["first"]]
    assert await _events(http, headers, target_type="role", target_id=target) == []
    assert await _events(http, headers, action="no.such.action", target_id=target) == []


async def test_audit_events_time_range(http: httpx.AsyncClient, accounts: Accounts) -> None:
    h = await _history(http, accounts)
    headers, target = h["headers"], h["target"]
    events = await _events(http, headers, target_type="user", target_id=target)
    oldest_first = events[::-1]
    stamps = [dt.datetime.fromisoformat(e["occurred_at"]) for e in oldest_first]
    assert len(set(stamps)) == len(stamps)  # one transaction per request

    since, until = stamps[2], stamps[5]
    window = await _events(
        http,
        headers,
        target_type="user",
        target_id=target,
        since=since.isoformat(),
        until=until.isoformat(),
    )
    # since is inclusive, until exclusive.
    assert [e["id"] for e in window] == [e["id"] for e in oldest_first[2:5]][::-1]

    # The same instants written with a Z or another offset select the same events.
    zulu = since.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    plus_two = until.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    assert "+02:00" in plus_two
    again = await _events(
        http, headers, target_type="user", target_id=target, since=zulu, until=plus_two
    )
    assert [e["id"] for e in again] == [e["id"] for e in window]

    only_since = await _events(
        http, headers, target_type="user", target_id=target, since=stamps[-1].isoformat()
    )
    assert [e["id"] for e in only_since] == [oldest_first[-1]["id"]]
    only_until = await _events(
        http, headers, target_type="user", target_id=target, until=stamps[0].isoformat()
    )
    assert only_until == []

    for bad in ("yesterday", "2024-13-01T00:00:00Z", "2024-01-01"):
        response = await http.get("/v1/audit-events", params={"since": bad}, headers=headers)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["type"] == "urn:hotpath:problem:invalid-parameter"


async def test_audit_time_range_needs_an_offset(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    """RFC 3339 requires an offset; a naive time would be read in the server's local zone."""
    _, admin = await accounts.create_and_login("admin")
    for name in ("since", "until"):
        response = await http.get(
            "/v1/audit-events", params={name: "2024-01-01T00:00:00"}, headers=admin.headers
        )
        assert response.status_code == 400, (name, response.text)
        assert response.json()["errors"][0]["pointer"] == f"/{name}"


async def test_audit_events_keyset_pagination(http: httpx.AsyncClient, accounts: Accounts) -> None:
    h = await _history(http, accounts)
    headers, target = h["headers"], h["target"]
    everything = await _events(http, headers, target_type="user", target_id=target)
    assert len(everything) == 7

    seen: list[int] = []
    url = f"/v1/audit-events?limit=2&target_type=user&target_id={target}"
    pages = 0
    while url:
        response = await http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["data"]) == (2 if pages < 4 else 1)
        seen += [e["id"] for e in body["data"]]
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            break
        assert link is not None
        assert link.endswith('>; rel="next"')
        next_url = httpx.URL(link[1 : link.index(">")])
        assert next_url.params["cursor"] == body["next_cursor"]
        assert next_url.params["target_id"] == target  # filters carry over
        url = str(next_url)
    assert pages == 4
    assert seen == [e["id"] for e in everything]


async def test_audit_events_bad_queries(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    h = admin.headers
    unknown = await http.get("/v1/audit-events?actor=1", headers=h)
    assert unknown.status_code == 400, unknown.text
    assert problem_type(unknown) == "unknown-parameter"
    for query in ("limit=1000", "limit=0", "actor_id=abc", "cursor=bogus"):
        response = await http.get(f"/v1/audit-events?{query}", headers=h)
        assert response.status_code in (400, 422), (query, response.text)


async def test_audit_actor_id_beyond_bigint_is_a_client_error(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    for actor_id in (str(INT64_MAX + 1), str(2**64 - 1), str(-(2**63) - 1)):
        response = await http.get(
            "/v1/audit-events", params={"actor_id": actor_id}, headers=admin.headers
        )
        assert response.status_code == 400, (actor_id, response.text)
    fits = await http.get(
        "/v1/audit-events", params={"actor_id": str(INT64_MAX)}, headers=admin.headers
    )
    assert fits.status_code == 200
    assert fits.json() == {"data": [], "next_cursor": None}


async def test_staff_reads_the_audit_trail_and_customers_cannot(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    staff_account, staff = await accounts.create_and_login("staff")
    _, customer = await accounts.create_and_login("customer")
    own = await http.get(
        "/v1/audit-events",
        params={"actor_id": staff_account.id, "action": "auth.login"},
        headers=staff.headers,
    )
    assert own.status_code == 200, own.text
    [login] = own.json()["data"]
    assert login["target_id"] == str(staff_account.id)
    denied = await http.get("/v1/audit-events", headers=customer.headers)
    assert denied.status_code == 403
    assert problem_type(denied) == "forbidden"
