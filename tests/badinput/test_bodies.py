"""Hostile and broken bodies on every operation that takes one (read from the OpenAPI document,
so a new route is covered once documented): nesting 1,000 deep, numbers past any integer or
float (1e400, 400 digits), bytes that are not UTF-8, escaped lone surrogates and NUL, keys
given twice, wrong types, truncated or trailing text, wrong content types and encodings.

Each is sent as a caller who may use the route (an administrator, with a real id in the path
and the headers the route documents), so it is the body that is judged. Every answer must be
a 4xx application/problem+json, never a 5xx, and nothing may be written: the row counts of
the tables a request could write (and of the audit trail's successes) are the same before
and after.
"""

from __future__ import annotations

import secrets

import asyncpg
import httpx
import orjson
import pytest

from tests.fixtures.bad_bodies import (
    WRONG_CONTENT_TYPES,
    BodyOperation,
    body_operations,
    sample,
    spoiled_bodies,
)
from tests.fixtures.catalog import Catalog
from tests.fixtures.identity import Accounts
from tests.fixtures.recipes import WEBHOOK_URL

OPERATIONS = body_operations()
# What a request with a body could add or remove: the tables' rows, and the audit trail's
# successes (a refused credential check is audited on purpose, an action that succeeded is not
# something a refused request may leave behind).
COUNTS = {
    table: f"SELECT count(*) FROM {table}"
    for table in (
        "users",
        "sessions",
        "products",
        "orders",
        "order_items",
        "idempotency_keys",
        "api_keys",
        "roles",
        "outbox",
        "webhook_endpoints",
    )
} | {"audit successes": "SELECT count(*) FROM audit_events WHERE outcome = 'success'"}


async def row_counts(db: asyncpg.Connection) -> dict[str, int]:
    return {name: int(await db.fetchval(query)) for name, query in COUNTS.items()}


class Target:
    """Where and how to send a body to one operation, as someone it would admit."""

    def __init__(self, http: httpx.AsyncClient, operation: BodyOperation) -> None:
        self.http = http
        self.operation = operation

    async def prepare(self, accounts: Accounts, catalog: Catalog) -> Target:
        _, admin = await accounts.create_and_login("admin")
        self.auth = admin.headers
        product = await catalog.create()
        customer = await accounts.create("customer")
        role = f"bad-{secrets.token_hex(4)}"
        created = await self.http.post(
            "/v1/roles", json={"name": role, "permissions": []}, headers=self.auth
        )
        assert created.status_code == 201, created.text
        hook = await self.http.post(
            "/v1/webhooks",
            json={"url": WEBHOOK_URL, "event_types": ["order.*"]},
            headers=self.auth,
        )
        assert hook.status_code == 201, hook.text
        values = {
            "product_id": str(product["id"]),
            "user_id": str(customer.id),
            "name": role,
            "endpoint_id": str(hook.json()["id"]),
        }
        missing = set(self.operation.path_parameters) - set(values)
        assert not missing, f"no value for path parameters {missing}: add one to Target"
        self.url = self.operation.path.format(**values)
        self.product_id = product["id"]
        return self

    async def headers(self) -> dict[str, str]:
        headers = dict(self.auth)
        for name in self.operation.headers:
            if name == "If-Match":
                current = await self.http.get(f"/v1/products/{self.product_id}")
                headers["if-match"] = current.headers["etag"]
            elif name == "Idempotency-Key":
                headers["idempotency-key"] = secrets.token_hex(16)
            else:
                raise AssertionError(f"no value for header {name}: add one to Target.headers")
        return headers

    async def send(self, body: bytes, content_type: str | None, **extra: str) -> httpx.Response:
        headers = await self.headers()
        if content_type is not None:
            headers["content-type"] = content_type
        headers.update(extra)
        return await self.http.request(
            self.operation.method, self.url, content=body, headers=headers
        )


def refusal_problem(response: httpx.Response) -> str | None:
    """What is wrong with this answer to a spoiled body (None: a proper refusal)."""
    if not 400 <= response.status_code < 500:
        return f"{response.status_code} {response.text[:200]}"
    media = response.headers.get("content-type", "")
    if media != "application/problem+json":
        return f"{response.status_code} with {media!r}"
    problem = response.json()
    if problem.get("status") != response.status_code or not problem.get("type"):
        return f"{response.status_code} with a malformed problem: {response.text[:200]}"
    return None


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.id for op in OPERATIONS])
async def test_spoiled_bodies_are_refused_with_a_problem_and_write_nothing(
    served: httpx.AsyncClient,
    accounts: Accounts,
    catalog: Catalog,
    db: asyncpg.Connection,
    operation: BodyOperation,
) -> None:
    target = await Target(served, operation).prepare(accounts, catalog)
    before = await row_counts(db)
    wrong: list[str] = []
    sent = 0
    for what, body in spoiled_bodies(operation):
        answer = await target.send(body, "application/json")
        sent += 1
        if (problem := refusal_problem(answer)) is not None:
            wrong.append(f"{what}: {problem}")
    fitting = orjson.dumps(sample(operation.schema))
    for content_type in WRONG_CONTENT_TYPES:
        answer = await target.send(fitting, content_type)
        sent += 1
        if (problem := refusal_problem(answer)) is not None:
            wrong.append(f"content type {content_type!r}: {problem}")
    for encoding in ("gzip", "br", "deflate", "x-unknown"):
        answer = await target.send(fitting, "application/json", **{"content-encoding": encoding})
        sent += 1
        if (problem := refusal_problem(answer)) is not None:
            wrong.append(f"content encoding {encoding}: {problem}")
    assert not wrong, f"{len(wrong)} of {sent} answers were not 4xx problems: {wrong[:15]}"
    assert await row_counts(db) == before
