"""Input a fuzzer found past the validation: each was a 500 or a value read in a wrong way."""

from __future__ import annotations

import io
import secrets

import httpx
import orjson
import pytest

from tests.fixtures.identity import Accounts
from tests.fixtures.support import assert_problem


async def test_key_ids_that_cannot_exist_are_not_found(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    for key_id in ("%00", "%C3%A9", "x" * 300):
        assert_problem(
            await http.get(f"/v1/api-keys/{key_id}", headers=tokens.headers), 404, "not-found"
        )
        assert_problem(
            await http.delete(f"/v1/api-keys/{key_id}", headers=tokens.headers), 404, "not-found"
        )
        rotated = await http.post(f"/v1/api-keys/{key_id}/rotate", headers=tokens.headers)
        assert_problem(rotated, 404, "not-found")


async def test_role_names_with_a_nul_are_not_found(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    user, _ = await accounts.create_and_login("customer")
    _, admin = await accounts.create_and_login("admin")
    for method in ("PUT", "DELETE"):
        answer = await http.request(method, f"/v1/users/{user.id}/roles/%00", headers=admin.headers)
        assert_problem(answer, 404, "not-found")
    patched = await http.patch("/v1/roles/%00", json={"permissions": []}, headers=admin.headers)
    assert_problem(patched, 404, "not-found")


@pytest.mark.parametrize(
    "query",
    ["since=9999-12-31T20:00:00-05:00", "until=0001-01-01T00:00:00%2B00:01"],
)
async def test_instants_past_year_9999_or_before_year_1_in_utc_are_refused(
    http: httpx.AsyncClient, accounts: Accounts, query: str
) -> None:
    _, admin = await accounts.create_and_login("admin")
    answer = await http.get(f"/v1/audit-events?{query}", headers=admin.headers)
    assert_problem(answer, 400, "invalid-parameter")
    assert answer.json()["errors"][0]["pointer"] == "/" + query.split("=")[0]


@pytest.mark.parametrize(
    "expires_at",
    [
        "9999-12-31T23:59:59-00:01",
        "9999-12-31T23:59:59.999999Z",  # stored as infinity, read back without a zone
        "9999-12-31T18:59:59.999999-05:00",
    ],
)
async def test_a_key_expiring_past_or_at_the_end_of_year_9999_in_utc_is_refused(
    http: httpx.AsyncClient, accounts: Accounts, expires_at: str
) -> None:
    _, tokens = await accounts.create_and_login("customer")
    body = {"name": "e", "expires_at": expires_at}
    answer = await http.post("/v1/api-keys", json=body, headers=tokens.headers)
    assert_problem(answer, 422, "validation-failed")
    assert answer.json()["errors"][0]["pointer"] == "/expires_at"
    listed = await http.get("/v1/api-keys", headers=tokens.headers)
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit-events?until=0.5",  # was read as seconds since 1970
        "/v1/audit-events?since=1700000000",
        "/v1/audit-events?since=2026-01-01",  # no time, no offset
        "/v1/audit-events?actor_id=1.0",
        "/v1/audit-events?limit=5.0",
        "/v1/products?limit=1e1",
        "/v1/products?min_price=1e3",
        "/v1/products?in_stock=1",
    ],
)
async def test_query_values_take_one_spelling(
    http: httpx.AsyncClient, accounts: Accounts, path: str
) -> None:
    _, admin = await accounts.create_and_login("admin")
    assert_problem(await http.get(path, headers=admin.headers), 400, "invalid-parameter")


async def test_the_usual_spellings_still_work(http: httpx.AsyncClient, accounts: Accounts) -> None:
    _, admin = await accounts.create_and_login("admin")
    for path in (
        "/v1/audit-events?since=2026-01-01T00:00:00Z&until=2026-12-31T23:59:59.5%2B01:00&limit=5",
        "/v1/audit-events?actor_id=-1",
        "/v1/products?limit=10&currency=EUR&min_price=100&in_stock=true",
    ):
        assert (await http.get(path, headers=admin.headers)).status_code == 200, path


async def test_a_stale_token_sent_by_habit_does_not_block_sign_in_or_probes(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    account, tokens = await accounts.create_and_login("customer")
    assert (await http.post("/v1/auth/logout", headers=tokens.headers)).status_code == 204
    stale = tokens.headers  # revoked by the logout
    fresh = await accounts.login(account)
    refreshed = await http.post(
        "/v1/auth/refresh", json={"refresh_token": fresh.refresh}, headers=stale
    )
    assert refreshed.status_code == 200, refreshed.text
    login = await http.post(
        "/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"authorization": "Bearer garbage"},
    )
    assert login.status_code == 200, login.text
    for probe in ("/livez", "/readyz", "/.well-known/jwks.json"):
        assert (await http.get(probe, headers={"x-api-key": "garbage"})).status_code == 200
    # Everywhere else a credential that does not verify is still a 401, never anonymous.
    assert_problem(await http.get("/v1/users/me", headers=stale), 401, "invalid-access-token")
    assert_problem(await http.get("/v1/products", headers=stale), 401, "invalid-access-token")


NESTED_BODY_ROUTES = (
    "/v1/auth/register",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/v1/orders",
    "/v1/products",
    "/v1/api-keys",
)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
async def test_deeply_nested_json_is_a_400_and_logs_no_traceback(
    http: httpx.AsyncClient, accounts: Accounts, log_stream: io.BytesIO, opener: bytes
) -> None:
    # msgspec refuses nesting past its depth limit with a RecursionError, which was a 500.
    _, admin = await accounts.create_and_login("admin")
    body = opener * 1000
    for path in NESTED_BODY_ROUTES:
        answer = await http.post(
            path,
            content=body,
            headers={
                **admin.headers,
                "content-type": "application/json",
                "idempotency-key": secrets.token_hex(8),
            },
        )
        assert_problem(answer, 400, "malformed-json", case=path)
        assert "nested too deeply" in answer.json()["detail"], path
    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line for line in lines if line.get("log.level") == "error"] == []
