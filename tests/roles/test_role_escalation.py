"""roles:write is no path to more permissions, and the admin role cannot be crippled.

Creating or changing a role needs every permission the role holds before and after the change,
the rule that granting or revoking a role follows. The admin role's permissions never shrink.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable

import asyncpg
import httpx
import jwt
import pytest

from server.auth.permissions import KNOWN_PERMISSIONS
from server.db.sqlfiles import load_queries
from server.roles.repository import RolesRepository
from server.web.state import app_container
from tests.fixtures.identity import Account, Accounts, Tokens
from tests.fixtures.support import problem_type

BUILT_IN = ("admin", "staff", "customer")

RoleRow = tuple[str, list[str], object]  # description, permissions, updated_at


def _name(prefix: str = "r") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def _perms(tokens: Tokens) -> set[str]:
    claims = jwt.decode(tokens.access, options={"verify_signature": False})
    return set(claims["perms"])


async def _rows(db: asyncpg.Connection, names: Iterable[str]) -> dict[str, RoleRow]:
    records = await db.fetch(
        "SELECT name, description, permissions, updated_at FROM roles WHERE name = ANY($1)",
        list(names),
    )
    return {r["name"]: (r["description"], r["permissions"], r["updated_at"]) for r in records}


async def _role_events(db: asyncpg.Connection, role: str) -> list[str]:
    records = await db.fetch(
        "SELECT action FROM audit_events WHERE target_type = 'role' AND target_id = $1 ORDER BY id",
        role,
    )
    return [r["action"] for r in records]


async def _manager(accounts: Accounts, *permissions: str) -> tuple[str, Account, Tokens]:
    """A role of its own holding `permissions`, and a signed-in user holding only that role."""
    role = _name("mgr")
    async with app_container(accounts.app).db.transaction() as conn:
        await RolesRepository(load_queries()).create(conn, role, "manager", permissions)
    account, tokens = await accounts.create_and_login(role)
    assert _perms(tokens) == set(permissions)
    return role, account, tokens


@pytest.fixture
async def built_in_roles(db: asyncpg.Connection) -> AsyncIterator[dict[str, RoleRow]]:
    """The built-in roles as they were; put back afterwards, so a regression fails this test
    only instead of every later test of the run that signs in as admin or customer."""
    before = await _rows(db, BUILT_IN)
    assert set(before) == set(BUILT_IN)
    yield before
    for name, (description, permissions, updated_at) in before.items():
        await db.execute(
            "UPDATE roles SET description = $2, permissions = $3, updated_at = $4 WHERE name = $1",
            name,
            description,
            permissions,
            updated_at,
        )


# --- roles:write without the permissions it hands out ------------------------------------------


async def test_roles_write_alone_cannot_create_a_role_with_permissions_it_lacks(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, _, tokens = await _manager(accounts, "roles:write")
    for permissions in (["users:write"], ["roles:write", "audit:read"], sorted(KNOWN_PERMISSIONS)):
        name = _name()
        response = await http.post(
            "/v1/roles", json={"name": name, "permissions": permissions}, headers=tokens.headers
        )
        assert response.status_code == 403, (permissions, response.text)
        assert problem_type(response) == "forbidden"
        lacking = sorted(set(permissions) - {"roles:write"})
        assert all(p in response.json()["detail"] for p in lacking), response.text
        assert await _rows(db, [name]) == {}
        assert await _role_events(db, name) == []


async def test_roles_write_alone_cannot_widen_its_own_role(
    http: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    built_in_roles: dict[str, RoleRow],
) -> None:
    """The fuzzer's path to administrator: widen one's own role, log in again, take admin."""
    role, account, tokens = await _manager(accounts, "roles:write")
    before = await _rows(db, [role])

    widened = await http.patch(
        f"/v1/roles/{role}",
        json={"permissions": sorted(KNOWN_PERMISSIONS)},
        headers=tokens.headers,
    )

    assert widened.status_code == 403, widened.text
    assert problem_type(widened) == "forbidden"
    assert "users:write" in widened.json()["detail"]
    assert await _rows(db, [role]) == before
    assert await _role_events(db, role) == []
    again = await accounts.login(account)
    assert _perms(again) == {"roles:write"}
    take_admin = await http.put(f"/v1/users/{account.id}/roles/admin", headers=again.headers)
    assert take_admin.status_code == 403, take_admin.text
    assert await _rows(db, BUILT_IN) == built_in_roles


async def test_roles_write_alone_cannot_widen_the_customer_role(
    http: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    built_in_roles: dict[str, RoleRow],
) -> None:
    _, _, tokens = await _manager(accounts, "roles:write")
    for permissions in (["users:write"], ["roles:write", "users:write"]):
        response = await http.patch(
            "/v1/roles/customer", json={"permissions": permissions}, headers=tokens.headers
        )
        assert response.status_code == 403, (permissions, response.text)
        assert problem_type(response) == "forbidden"
    assert await _rows(db, BUILT_IN) == built_in_roles
    assert "role.updated" not in await _role_events(db, "customer")
    _, customer = await accounts.create_and_login("customer")
    assert _perms(customer) == set()


async def test_roles_write_cannot_change_a_role_holding_permissions_it_lacks(
    http: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    built_in_roles: dict[str, RoleRow],
) -> None:
    """Taking permissions away needs them as well, as revoking a role does: a lesser manager
    cannot strip the staff (or admin) role, nor rewrite it to the same permissions."""
    _, _, tokens = await _manager(accounts, "roles:write", "users:read")
    staff = sorted(built_in_roles["staff"][1])
    for role, permissions in (
        ("staff", []),
        ("staff", ["users:read"]),
        ("staff", staff),
        ("admin", ["roles:write"]),
    ):
        response = await http.patch(
            f"/v1/roles/{role}",
            json={"permissions": permissions, "description": "rewritten"},
            headers=tokens.headers,
        )
        assert response.status_code == 403, (role, permissions, response.text)
        assert problem_type(response) == "forbidden"
        assert "audit:read" in response.json()["detail"]
    assert await _rows(db, BUILT_IN) == built_in_roles


async def test_roles_write_may_hand_out_what_it_holds(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    own, actor, tokens = await _manager(accounts, "roles:write", "audit:read")
    name = _name()
    created = await http.post(
        "/v1/roles", json={"name": name, "permissions": ["audit:read"]}, headers=tokens.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["permissions"] == ["audit:read"]

    for permissions in (["audit:read", "roles:write"], []):
        patched = await http.patch(
            f"/v1/roles/{name}", json={"permissions": permissions}, headers=tokens.headers
        )
        assert patched.status_code == 200, (permissions, patched.text)
        assert patched.json()["permissions"] == permissions
    assert (await _rows(db, [name]))[name][1] == []
    assert await _role_events(db, name) == ["role.created", "role.updated", "role.updated"]

    # Its own role too, as long as nothing new comes in: it may give a permission up.
    narrowed = await http.patch(
        f"/v1/roles/{own}", json={"permissions": ["roles:write"]}, headers=tokens.headers
    )
    assert narrowed.status_code == 200, narrowed.text
    assert _perms(await accounts.login(actor)) == {"roles:write"}


async def test_an_admin_creates_and_patches_roles_with_any_permission(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, admin = await accounts.create_and_login("admin")
    everything = sorted(KNOWN_PERMISSIONS)
    name = _name()
    created = await http.post(
        "/v1/roles", json={"name": name, "permissions": everything}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    for permissions in ([], everything):
        patched = await http.patch(
            f"/v1/roles/{name}", json={"permissions": permissions}, headers=admin.headers
        )
        assert patched.status_code == 200, (permissions, patched.text)
    assert (await _rows(db, [name]))[name][1] == everything


# --- the admin role --------------------------------------------------------------------------


async def test_the_admin_role_cannot_lose_a_permission(
    http: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    built_in_roles: dict[str, RoleRow],
) -> None:
    _, admin = await accounts.create_and_login("admin")
    everything = sorted(KNOWN_PERMISSIONS)
    events = await _role_events(db, "admin")
    for permissions in (["users:read"], [], everything[1:]):
        response = await http.patch(
            "/v1/roles/admin", json={"permissions": permissions}, headers=admin.headers
        )
        assert response.status_code == 409, (permissions, response.text)
        assert problem_type(response) == "role-protected"
        assert await _rows(db, BUILT_IN) == built_in_roles
    assert await _role_events(db, "admin") == events

    # Nothing was cut off: the admin's token still works and a new admin holds everything.
    assert (await http.get("/v1/users?limit=1", headers=admin.headers)).status_code == 200
    _, fresh = await accounts.create_and_login("admin")
    assert _perms(fresh) == KNOWN_PERMISSIONS

    # Keeping every permission, the role can still be described anew.
    described = await http.patch(
        "/v1/roles/admin",
        json={"permissions": everything, "description": "Full access"},
        headers=admin.headers,
    )
    assert described.status_code == 200, described.text
    assert described.json() == {
        "name": "admin",
        "description": "Full access",
        "permissions": everything,
    }


async def test_the_admin_role_cannot_be_deleted(
    http: httpx.AsyncClient,
    accounts: Accounts,
    db: asyncpg.Connection,
    built_in_roles: dict[str, RoleRow],
) -> None:
    """There is no operation that deletes a role; should one come, it must refuse this one."""
    _, admin = await accounts.create_and_login("admin")
    for role in ("admin", "customer"):  # what create-admin and new accounts rely on
        response = await http.delete(f"/v1/roles/{role}", headers=admin.headers)
        assert response.status_code in (405, 409), (role, response.text)
        if response.status_code == 409:
            assert problem_type(response) == "role-protected"
    assert await _rows(db, BUILT_IN) == built_in_roles


async def test_the_openapi_document_names_the_refusals(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    create, patch = paths["/v1/roles"]["post"], paths["/v1/roles/{name}"]["patch"]
    assert {"403", "409"} <= set(create["responses"])
    assert {"403", "409"} <= set(patch["responses"])
    assert "permissions the caller holds" in create["description"]
    assert "admin role cannot lose a permission" in patch["description"]
