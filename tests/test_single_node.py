"""The whole app with no Redis configured: single-node mode, said in the log and in /readyz."""

from __future__ import annotations

import io
from dataclasses import replace

import httpx
import orjson
import pytest

from server.runtime.settings import Settings
from tests.fixtures.identity import Accounts


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, redis_url=None, rate_limits=True)


async def test_without_redis_the_app_serves_in_single_node_mode(
    http: httpx.AsyncClient, accounts: Accounts, log_stream: io.BytesIO
) -> None:
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["redis"] == "single-node"
    events = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    said = [e for e in events if e["message"] == "redis_not_configured"]
    assert said
    assert said[0]["mode"] == "single-node"

    # Sessions, revocation and the product cache work from process memory, the limiter on.
    _, admin = await accounts.create_and_login("admin")
    price = {"amount_minor": 1500, "currency": "EUR"}
    body = {"sku": "SN-1", "name": "Lamp", "category": "lighting", "price": price}
    created = await http.post("/v1/products", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    product = created.json()["id"]
    for _ in range(2):  # the second read comes from the in-process cache
        read = await http.get(f"/v1/products/{product}")
        assert (read.status_code, read.json()["name"]) == (200, "Lamp")
    renamed = await http.patch(
        f"/v1/products/{product}",
        json={"name": "Desk lamp"},
        headers={**admin.headers, "if-match": read.headers["etag"]},
    )
    assert renamed.status_code == 200, renamed.text
    assert (await http.get(f"/v1/products/{product}")).json()["name"] == "Desk lamp"

    assert (await http.post("/v1/auth/logout", headers=admin.headers)).status_code == 204
    refused = await http.get("/v1/users/me", headers=admin.headers)
    assert refused.status_code == 401
