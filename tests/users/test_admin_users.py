"""The admin's /v1/users: keyset pagination, filters, status changes and role grants."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from typing import Any

import httpx
import jwt

from server.users.repository import NewUser
from server.web.state import app_container
from tests.fixtures.identity import Account, Accounts, Tokens
from tests.fixtures.support import problem_type

INT64_MAX = 2**63 - 1
_LINK = re.compile(r'^<([^>]+)>; rel="next"$')


async def _create_with_emails(
    accounts: Accounts, emails: list[str], *, roles: tuple[str, ...] = ("customer",)
) -> list[int]:
    """Accounts with chosen addresses, all in ONE transaction: they share created_at, so the
    keyset's tie-break on id is exercised."""
    digest = await accounts.hasher.hash("unused password " + secrets.token_hex(4))
    async with app_container(accounts.app).db.transaction() as conn:
        return [
            (await accounts.repo.create(conn, NewUser(e, digest, "Listed", roles=roles))).id
            for e in emails
        ]


def _prefix() -> str:
    return f"pg{secrets.token_hex(5)}-"


async def _walk(
    http: httpx.AsyncClient, headers: dict[str, str], first: str, *, follow_link: bool
) -> list[list[dict[str, Any]]]:
    """Every page of a list: by the Link header's URL, or by adding next_cursor to the query."""
    pages: list[list[dict[str, Any]]] = []
    url = first
    while True:
        response = await http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        link = response.headers.get("link")
        if cursor is None:
            assert link is None
            return pages
        assert link is not None
        match = _LINK.match(link)
        assert match is not None, link
        next_url = httpx.URL(match.group(1))
        assert next_url.params["cursor"] == cursor
        if follow_link:
            url = str(next_url)
        else:
            url = str(httpx.URL(first).copy_merge_params({"cursor": cursor}))
        assert len(pages) < 50, "pagination does not end"


async def _audit(
    http: httpx.AsyncClient, headers: dict[str, str], **filters: str | int
) -> list[dict[str, Any]]:
    response = await http.get("/v1/audit-events", params={**filters, "limit": 100}, headers=headers)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events


async def _refresh(http: httpx.AsyncClient, tokens: Tokens) -> httpx.Response:
    return await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})


# --- listing ---------------------------------------------------------------------------------


async def test_keyset_pagination_walks_every_account_once(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    prefix = _prefix()
    ids = await _create_with_emails(accounts, [f"{prefix}{i:02}@example.com" for i in range(25)])

    for follow_link in (False, True):
        url = f"/v1/users?limit=10&email_prefix={prefix}"
        pages = await _walk(http, admin.headers, url, follow_link=follow_link)
        assert [len(p) for p in pages] == [10, 10, 5]
        seen = [u["id"] for page in pages for u in page]
        assert seen == sorted(ids)  # same created_at: id order, no duplicates, none missing

    # A page that ends exactly at the last row says there is nothing more.
    pages = await _walk(
        http, admin.headers, f"/v1/users?limit=5&email_prefix={prefix}", follow_link=False
    )
    assert [len(p) for p in pages] == [5, 5, 5, 5, 5]


async def test_pagination_across_different_creation_times(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    prefix = _prefix()
    ids: list[int] = []
    for batch in range(3):
        emails = [f"{prefix}{batch}{i}@example.com" for i in range(4)]
        ids += await _create_with_emails(accounts, emails)
    pages = await _walk(
        http, admin.headers, f"/v1/users?limit=3&email_prefix={prefix}", follow_link=True
    )
    seen = [u["id"] for page in pages for u in page]
    assert seen == ids
    stamps = [u["created_at"] for page in pages for u in page]
    assert stamps == sorted(stamps)


async def test_filters_status_role_and_email_prefix(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    p = _prefix()
    [plain, staff] = await _create_with_emails(accounts, [f"{p}plain@x.io", f"{p}staff@x.io"])
    [extra] = await _create_with_emails(accounts, [f"{p}staff2@x.io"], roles=("customer", "staff"))
    await _create_with_emails(accounts, [f"{p}s@x.io"], roles=("staff",))
    patched = await http.patch(
        f"/v1/users/{plain}", json={"status": "disabled"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    grant = await http.put(f"/v1/users/{staff}/roles/staff", headers=admin.headers)
    assert grant.status_code == 200, grant.text

    async def emails(**params: str) -> list[str]:
        response = await http.get(
            "/v1/users", params={"limit": "100", **params}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        return [u["email"].removeprefix(p) for u in response.json()["data"]]

    assert await emails(email_prefix=p) == ["plain@x.io", "staff@x.io", "staff2@x.io", "s@x.io"]
    assert await emails(email_prefix=p, status="disabled") == ["plain@x.io"]
    assert await emails(email_prefix=p, status="active") == ["staff@x.io", "staff2@x.io", "s@x.io"]
    assert await emails(email_prefix=p, role="staff") == ["staff@x.io", "staff2@x.io", "s@x.io"]
    assert await emails(email_prefix=p, role="customer", status="active") == [
        "staff@x.io",
        "staff2@x.io",
    ]
    assert await emails(email_prefix=p + "staff") == ["staff@x.io", "staff2@x.io"]
    assert await emails(email_prefix=p.upper() + "STAFF2") == ["staff2@x.io"]
    assert extra  # created with both roles from the start


async def test_email_prefix_wildcards_are_literal(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    p = _prefix()
    await _create_with_emails(
        accounts,
        [
            f"{p}a_b@x.io",
            f"{p}axb@x.io",
            f"{p}c%d@x.io",
            f"{p}cxxd@x.io",
            f"{p}e\\f@x.io",
            f"{p}ef@x.io",
        ],
    )

    async def emails(prefix: str) -> list[str]:
        response = await http.get(
            "/v1/users", params={"email_prefix": prefix, "limit": "100"}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        return [u["email"].removeprefix(p) for u in response.json()["data"]]

    assert await emails(p + "a_") == ["a_b@x.io"]
    assert await emails(p + "a") == ["a_b@x.io", "axb@x.io"]
    assert await emails(p + "c%") == ["c%d@x.io"]
    assert await emails(p + "c%d") == ["c%d@x.io"]
    assert await emails(p + "e\\") == ["e\\f@x.io"]
    assert await emails(p[:-1] + "_") == []  # "_" does not stand for the "-" of the prefix
    assert await emails(p + "%") == []
    assert await emails(p + "c\uff05") == ["c%d@x.io"]  # a full-width % is a literal % too


async def test_the_email_prefix_is_normalised_as_addresses_are(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    p = _prefix()
    [kim] = await _create_with_emails(accounts, [f"{p}kim@x.io"])
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in p.upper())
    for prefix in (full_width + "\u212aIM", p.upper() + "KIM@X"):
        response = await http.get(
            "/v1/users", params={"email_prefix": prefix}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        assert [u["id"] for u in response.json()["data"]] == [kim], prefix


async def test_bad_cursors_are_400(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    p = _prefix()
    await _create_with_emails(accounts, [f"{p}{i}@x.io" for i in range(3)])
    first = await http.get(f"/v1/users?limit=1&email_prefix={p}", headers=admin.headers)
    cursor = first.json()["next_cursor"]
    assert isinstance(cursor, str)

    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    tag, payload = raw[:16], raw[16:]
    moved = payload.replace(b"]", b"0]") if payload.endswith(b"]") else payload + b" "
    forged = base64.urlsafe_b64encode(tag + moved).rstrip(b"=").decode()
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]

    audit_page = await http.get("/v1/audit-events?limit=1", headers=admin.headers)
    audit_cursor = audit_page.json()["next_cursor"]
    assert isinstance(audit_cursor, str)

    for bad in (forged, flipped, "not-a-cursor", "", "%%%", audit_cursor):
        response = await http.get(
            "/v1/users", params={"cursor": bad, "email_prefix": p}, headers=admin.headers
        )
        if bad == "":
            assert response.status_code in (200, 400, 422), response.text
            continue
        assert response.status_code == 400, (bad, response.text)
        assert problem_type(response) == "invalid-cursor"

    # And the other way round: a users cursor is refused by the audit list.
    response = await http.get("/v1/audit-events", params={"cursor": cursor}, headers=admin.headers)
    assert response.status_code == 400, response.text
    assert problem_type(response) == "invalid-cursor"


async def test_bad_query_parameters(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    h = admin.headers
    unknown = await http.get("/v1/users?sort=email", headers=h)
    assert unknown.status_code == 400, unknown.text
    assert problem_type(unknown) == "unknown-parameter"
    repeated = await http.get("/v1/users?limit=1&limit=2", headers=h)
    assert repeated.status_code == 400, repeated.text
    for query in ("limit=1000", "limit=0", "limit=ten", "status=deleted", "email_prefix="):
        response = await http.get(f"/v1/users?{query}", headers=h)
        assert response.status_code in (400, 422), (query, response.text)


async def test_get_missing_user_is_404(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    for user_id in (str(INT64_MAX), "0", "-1", "abc"):
        response = await http.get(f"/v1/users/{user_id}", headers=admin.headers)
        assert response.status_code == 404, (user_id, response.text)
        assert problem_type(response) == "not-found"


async def test_user_id_beyond_bigint_is_404_not_500(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    account, admin = await accounts.create_and_login("admin")
    for user_id in (str(INT64_MAX + 1), "9" * 30):
        for method, url, body in (
            ("GET", f"/v1/users/{user_id}", None),
            ("PATCH", f"/v1/users/{user_id}", {"display_name": "x"}),
            ("PUT", f"/v1/users/{user_id}/roles/staff", None),
            ("DELETE", f"/v1/users/{user_id}/roles/staff", None),
        ):
            response = await http.request(method, url, json=body, headers=admin.headers)
            assert response.status_code == 404, (method, url, response.text)
            assert problem_type(response) == "not-found"
    assert account.id <= INT64_MAX


async def test_user_ids_have_one_spelling(http: httpx.AsyncClient, accounts: Accounts) -> None:
    account, admin = await accounts.create_and_login("admin")
    assert (await http.get(f"/v1/users/{account.id}", headers=admin.headers)).status_code == 200
    digits = str(account.id).rjust(2, "0")
    for alias in (f"+{account.id}", f"{digits[0]}_{digits[1:]}", f"%20{account.id}"):
        response = await http.get(f"/v1/users/{alias}", headers=admin.headers)
        assert response.status_code == 404, (alias, response.text)


# --- status ----------------------------------------------------------------------------------


async def test_disabling_a_user_cuts_access_at_once(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    actor, admin = await accounts.create_and_login("admin")
    target, tokens = await accounts.create_and_login("customer")
    assert (await http.get("/v1/users/me", headers=tokens.headers)).status_code == 200

    response = await http.patch(
        f"/v1/users/{target.id}", json={"status": "disabled"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "disabled"

    me = await http.get("/v1/users/me", headers=tokens.headers)
    assert me.status_code == 401
    assert me.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    refreshed = await _refresh(http, tokens)
    assert refreshed.status_code == 401, refreshed.text
    login = await http.post(
        "/v1/auth/login", json={"email": target.email, "password": target.password}
    )
    assert login.status_code == 401
    got = await http.get(f"/v1/users/{target.id}", headers=admin.headers)
    assert got.json()["status"] == "disabled"

    [event] = await _audit(
        http, admin.headers, action="user.status_changed", target_id=str(target.id)
    )
    assert event["actor_id"] == actor.id
    assert (event["target_type"], event["outcome"]) == ("user", "success")
    assert event["details"] == {"status": "disabled"}


async def test_an_admin_cannot_disable_themselves(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    actor, admin = await accounts.create_and_login("admin")
    response = await http.patch(
        f"/v1/users/{actor.id}", json={"status": "disabled"}, headers=admin.headers
    )
    assert response.status_code == 409, response.text
    assert problem_type(response) == "cannot-change-self"
    demote = await http.delete(f"/v1/users/{actor.id}/roles/admin", headers=admin.headers)
    assert demote.status_code == 409, demote.text
    me = await http.get("/v1/users/me", headers=admin.headers)
    assert me.status_code == 200
    assert (me.json()["status"], me.json()["roles"]) == ("active", ["admin"])
    assert (
        await _audit(http, admin.headers, action="user.status_changed", target_id=str(actor.id))
        == []
    )


async def test_patch_validation(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    target = await accounts.create("customer")
    for body in ({"status": "deleted"}, {"roles": ["admin"]}, {"email": "x@y.z"}):
        response = await http.patch(f"/v1/users/{target.id}", json=body, headers=admin.headers)
        assert response.status_code == 422, (body, response.text)
    missing = await http.patch(
        f"/v1/users/{INT64_MAX}", json={"status": "disabled"}, headers=admin.headers
    )
    assert missing.status_code == 404


# --- roles -----------------------------------------------------------------------------------


async def test_grant_and_revoke_roles(http: httpx.AsyncClient, accounts: Accounts) -> None:
    actor, admin = await accounts.create_and_login("admin")
    target, tokens = await accounts.create_and_login("customer")
    url = f"/v1/users/{target.id}/roles"

    granted = await http.put(f"{url}/staff", headers=admin.headers)
    assert granted.status_code == 200, granted.text
    assert granted.json()["roles"] == ["customer", "staff"]
    again = await http.put(f"{url}/staff", headers=admin.headers)
    assert again.status_code == 200
    assert again.json()["roles"] == ["customer", "staff"]
    [event] = await _audit(
        http, admin.headers, action="user.role_granted", target_id=str(target.id)
    )
    assert event["actor_id"] == actor.id
    assert event["details"] == {"role": "staff"}

    unknown = await http.put(f"{url}/no-such-role", headers=admin.headers)
    assert unknown.status_code == 404, unknown.text
    nobody = await http.put(f"/v1/users/{INT64_MAX}/roles/staff", headers=admin.headers)
    assert nobody.status_code == 404, nobody.text

    # The old token predates the grant: its permissions are those it was issued with.
    assert (await http.get("/v1/users", headers=tokens.headers)).status_code == 403
    assert (await http.get("/v1/users/me", headers=tokens.headers)).status_code == 200

    revoked = await http.delete(f"{url}/staff", headers=admin.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["roles"] == ["customer"]
    [event] = await _audit(
        http, admin.headers, action="user.role_revoked", target_id=str(target.id)
    )
    assert event["actor_id"] == actor.id
    assert event["details"] == {"role": "staff"}

    # Revoking ends every session: the access token and the refresh token stop working.
    me = await http.get("/v1/users/me", headers=tokens.headers)
    assert me.status_code == 401
    assert (await _refresh(http, tokens)).status_code == 401


async def test_a_granted_role_takes_effect_at_the_next_login(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    target = await accounts.create("customer")
    granted = await http.put(f"/v1/users/{target.id}/roles/staff", headers=admin.headers)
    assert granted.status_code == 200
    tokens = await accounts.login(target)
    claims = jwt.decode(tokens.access, options={"verify_signature": False})
    assert {"users:read", "audit:read"} <= set(claims["perms"])
    assert claims["roles"] == ["customer", "staff"]
    assert (await http.get("/v1/users", headers=tokens.headers)).status_code == 200


async def _same_second_window() -> None:
    """Start right after a second boundary, so the next few requests share one epoch second."""
    fraction = time.time() % 1
    if fraction > 0.5:
        await asyncio.sleep(1.02 - fraction)


async def test_logging_in_again_right_after_a_role_revocation_works(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    target: Account = await accounts.create("customer", "staff")
    await _same_second_window()
    revoked = await http.delete(f"/v1/users/{target.id}/roles/staff", headers=admin.headers)
    assert revoked.status_code == 200

    tokens = await accounts.login(target)  # a brand-new session, after the revocation

    me = await http.get("/v1/users/me", headers=tokens.headers)
    assert me.status_code == 200, me.text
    assert (await http.get("/v1/users", headers=tokens.headers)).status_code == 403


async def test_logging_in_again_right_after_re_enabling_works(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    target = await accounts.create("customer")
    await _same_second_window()
    for status in ("disabled", "active"):
        response = await http.patch(
            f"/v1/users/{target.id}", json={"status": status}, headers=admin.headers
        )
        assert response.status_code == 200
    tokens = await accounts.login(target)
    me = await http.get("/v1/users/me", headers=tokens.headers)
    assert me.status_code == 200, me.text


async def test_users_write_alone_cannot_grant_more_than_it_holds(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    """A support role with users:write must not be able to make itself (or anyone) admin."""
    _, admin = await accounts.create_and_login("admin")
    name = f"support-{secrets.token_hex(3)}"
    created = await http.post(
        "/v1/roles",
        json={"name": name, "permissions": ["users:read", "users:write"]},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    helper, tokens = await accounts.create_and_login(name)

    escalate = await http.put(f"/v1/users/{helper.id}/roles/admin", headers=tokens.headers)

    assert escalate.status_code == 403, escalate.text
    after = await http.get(f"/v1/users/{helper.id}", headers=admin.headers)
    assert "admin" not in after.json()["roles"]
