"""The limiter in the request path: budgets by route class and key, the IETF headers on every
limited answer, a problem+json 429 with a Retry-After that is never early."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher
from structlog.typing import FilteringBoundLogger

from server.app import create_app
from server.runtime.settings import Settings
from tests.fixtures.identity import Mailbox
from tests.fixtures.support import client_for, lifespan

WINDOW = 60.0


@pytest.fixture
def address() -> str:
    # The budgets live in the run's shared Redis: a fresh client address keeps tests apart.
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@pytest.fixture
async def http(
    settings: Settings, logger: FilteringBoundLogger, address: str
) -> AsyncIterator[httpx.AsyncClient]:
    limited = dataclasses.replace(
        settings,
        rate_limits=True,
        rate_read=(3, WINDOW),
        rate_write=(2, WINDOW),
        rate_auth=(4, WINDOW),
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )
    app = create_app(limited, logger=logger)
    async with lifespan(app), client_for(app, client=(address, 40000)) as client:
        yield client


async def customer(dsn: str) -> tuple[str, str]:
    email = f"limited-{secrets.token_hex(5)}@example.com"
    password = "rate limited passphrase " + secrets.token_hex(4)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO users (email, password_hash) VALUES ($1, $2)",
            email,
            PasswordHasher(time_cost=1, memory_cost=1024).hash(password),
        )
    finally:
        await conn.close()
    return email, password


def remaining(response: httpx.Response) -> int:
    return int(response.headers["ratelimit"].split(";r=")[1].split(";")[0])


async def test_reads_spend_the_read_budget_then_get_a_429_with_headers(
    http: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    answers = [await http.get("/v1/products") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    for answer in answers:
        assert answer.headers["ratelimit-policy"] == '"read";q=3;w=60'
    assert [remaining(a) for a in answers] == [2, 1, 0]

    refused = await http.get("/v1/products")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:hotpath:problem:rate-limited"
    assert refused.headers["ratelimit-policy"] == '"read";q=3;w=60'
    assert remaining(refused) == 0
    # The next token is due one emission interval (60 s / 3) after the first request.
    due = WINDOW / 3 - (time.monotonic() - started)
    assert int(refused.headers["retry-after"]) >= due
    assert int(refused.headers["retry-after"]) <= WINDOW / 3
    assert "x-request-id" in refused.headers  # the outer middleware still ran

    # Writes have a budget of their own, and probes are never limited.
    assert (await http.post("/v1/orders", json={})).status_code == 401
    health = await http.get("/livez")
    assert health.status_code == 200
    assert "ratelimit" not in health.headers


async def test_a_signed_in_user_spends_a_budget_of_their_own(
    http: httpx.AsyncClient, migrated_db: str
) -> None:
    for _ in range(3):
        assert (await http.get("/v1/products")).status_code == 200
    assert (await http.get("/v1/products")).status_code == 429  # this address is spent

    email, password = await customer(migrated_db)
    login = await http.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    assert login.headers["ratelimit-policy"] == '"auth";q=4;w=60'
    bearer = {"authorization": f"Bearer {login.json()['access_token']}"}
    mine = [await http.get("/v1/products", headers=bearer) for _ in range(3)]
    assert [a.status_code for a in mine] == [200, 200, 200]
    assert [remaining(a) for a in mine] == [2, 1, 0]
    assert (await http.get("/v1/products", headers=bearer)).status_code == 429


async def test_credential_endpoints_are_limited_per_address_whoever_calls(
    http: httpx.AsyncClient,
) -> None:
    wrong = {"email": "nobody@example.com", "password": "not the password at all"}
    statuses = [(await http.post("/v1/auth/login", json=wrong)).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 401]
    refused = await http.post("/v1/auth/login", json=wrong)
    assert refused.status_code == 429
    assert refused.json()["type"] == "urn:hotpath:problem:rate-limited"
    # The same address is now refused on every credential endpoint, before any work is done.
    forgot = await http.post("/v1/auth/password/forgot", json={"email": "a@example.com"})
    assert forgot.status_code == 429


def test_the_high_tier_never_exceeds_what_a_policy_can_express(settings: Settings) -> None:
    from server.ratelimit.classes import RouteClasses
    from server.ratelimit.policy import MAX_RATE

    classes = RouteClasses(dataclasses.replace(settings, rate_read=(MAX_RATE, 1.0)))
    assert classes.read_high.limit == MAX_RATE
    assert RouteClasses(settings).read_high.limit == settings.rate_read[0] * 10


async def test_reset_mails_to_one_account_are_budgeted_whoever_asks(
    settings: Settings, logger: FilteringBoundLogger, migrated_db: str
) -> None:
    email, _ = await customer(migrated_db)
    budgeted = dataclasses.replace(
        settings, rate_limits=True, rate_auth=(100, WINDOW), rate_account_mail=(2, 3600.0)
    )
    app = create_app(budgeted, logger=logger)
    async with lifespan(app):
        answers = []
        for n in range(3):  # three different addresses: only the account's budget applies
            async with client_for(app, client=(f"10.9.8.{n + 1}", 40000)) as http:
                answers.append(await http.post("/v1/auth/password/forgot", json={"email": email}))
        assert len({(a.status_code, a.text) for a in answers}) == 1  # the same answer each time
        sent = await Mailbox(settings.data_dir / "mail", app).messages(email)
    assert len(sent) == 2


async def test_an_api_key_spends_its_own_budget_and_the_high_tier_a_larger_one(
    http: httpx.AsyncClient, migrated_db: str
) -> None:
    email, password = await customer(migrated_db)
    conn = await asyncpg.connect(migrated_db)
    try:  # the high tier needs apikeys:write
        await conn.execute("UPDATE users SET roles = '{admin}' WHERE email = $1", email)
    finally:
        await conn.close()
    login = await http.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    session = {"authorization": f"Bearer {login.json()['access_token']}"}
    keys = {}
    for tier in ("standard", "high"):
        made = await http.post(
            "/v1/api-keys", json={"name": tier, "rate_tier": tier}, headers=session
        )
        assert made.status_code == 201, made.text
        keys[tier] = {"x-api-key": made.json()["key"]}

    for _ in range(3):
        assert (await http.get("/v1/products", headers=session)).status_code == 200
    assert (await http.get("/v1/products", headers=session)).status_code == 429
    # Each key has a budget of its own, not the owner's.
    standard = [await http.get("/v1/products", headers=keys["standard"]) for _ in range(4)]
    assert [a.status_code for a in standard] == [200, 200, 200, 429]
    assert standard[0].headers["ratelimit-policy"] == '"read";q=3;w=60'
    # The high tier: the read budget times HOTPATH_RATE_LIMIT_HIGH_TIER (10).
    high = [await http.get("/v1/products", headers=keys["high"]) for _ in range(12)]
    assert all(a.status_code == 200 for a in high)
    assert high[0].headers["ratelimit-policy"] == '"read-high";q=30;w=60'
    assert remaining(high[-1]) == 18
