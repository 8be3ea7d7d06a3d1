"""Webhook endpoints through HTTP: register (secret once, Location), list pages, read, change,
delete, rotate (both secrets valid for the grace period), ping, deliveries and redelivery,
event type patterns, the SSRF refusal at creation and the audit trail."""

from __future__ import annotations

import base64
import dataclasses
import re

import asyncpg
import httpx
import pytest

from server.runtime.settings import Settings
from server.webhooks.signing import SecretBox
from tests.fixtures.identity import Accounts, Tokens

PROBLEM = "urn:hotpath:problem:"
URL = "https://93.184.215.14/hooks/hotpath"
SECRET = re.compile(r"whsec_([A-Za-z0-9+/]+={0,2})")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, webhook_rotation_grace_seconds=3600)


@pytest.fixture
async def admin(accounts: Accounts) -> Tokens:
    return (await accounts.create_and_login("admin"))[1]


async def create(http: httpx.AsyncClient, admin: Tokens, **body: object) -> httpx.Response:
    payload = {"url": URL, "event_types": ["order.*", "product.created"], **body}
    return await http.post("/v1/webhooks", json=payload, headers=admin.headers)


async def test_create_shows_the_secret_once(
    http: httpx.AsyncClient, admin: Tokens, db: asyncpg.Connection, settings: Settings
) -> None:
    answer = await create(http, admin, description="orders to the warehouse")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert answer.headers["location"] == f"/v1/webhooks/{body['id']}"
    assert answer.headers["cache-control"] == "no-store"
    match = SECRET.fullmatch(body["secret"])
    assert match is not None
    assert 24 <= len(base64.b64decode(match.group(1))) <= 64
    assert body["event_types"] == ["order.*", "product.created"]
    assert body["enabled"] is True

    read = await http.get(answer.headers["location"], headers=admin.headers)
    assert read.status_code == 200
    assert "secret" not in read.json()
    listed = await http.get("/v1/webhooks?limit=100", headers=admin.headers)
    assert body["secret"] not in listed.text

    # Stored sealed, never in the clear, and the worker can open it.
    sealed = await db.fetchval("SELECT secret_box FROM webhook_endpoints WHERE id = $1", body["id"])
    assert body["secret"].encode() not in sealed
    assert SecretBox(settings.secret_key).open(sealed) == body["secret"]
    audit = await db.fetchval(
        "SELECT details::text FROM audit_events WHERE action = 'webhook.created' "
        "AND target_id = $1",
        str(body["id"]),
    )
    assert audit is not None
    assert body["secret"] not in audit


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://93.184.215.14/", "https"),
        ("https://127.0.0.1/", "loopback"),
        ("https://10.1.2.3/", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://2130706433/", "loopback"),
        ("https://0x7f.1/", "loopback"),
        ("https://localhost/", "local name"),
        ("https://user:pw@93.184.215.14/", "credentials"),
        ("ftp://93.184.215.14/", "https"),
    ],
)
async def test_unsafe_urls_are_refused_at_creation(
    http: httpx.AsyncClient, admin: Tokens, db: asyncpg.Connection, url: str, words: str
) -> None:
    before = await db.fetchval("SELECT count(*) FROM webhook_endpoints")
    answer = await create(http, admin, url=url)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["type"] == PROBLEM + "unsafe-webhook-url"
    assert words in body["detail"]
    assert body["errors"][0]["pointer"] == "/url"
    assert await db.fetchval("SELECT count(*) FROM webhook_endpoints") == before


async def test_a_change_of_url_is_checked_too(http: httpx.AsyncClient, admin: Tokens) -> None:
    created = (await create(http, admin)).json()
    answer = await http.patch(
        f"/v1/webhooks/{created['id']}", json={"url": "https://192.168.1.1/"}, headers=admin.headers
    )
    assert answer.status_code == 422
    assert answer.json()["type"] == PROBLEM + "unsafe-webhook-url"


@pytest.mark.parametrize(
    ("patterns", "status"),
    [
        (["*"], 201),
        (["order.placed", "stock.*"], 201),
        (["orders.*"], 422),  # matches nothing: a typo
        (["order.?"], 422),
        ([], 422),
        (["ORDER.placed"], 422),
    ],
)
async def test_event_type_patterns(
    http: httpx.AsyncClient, admin: Tokens, patterns: list[str], status: int
) -> None:
    answer = await create(http, admin, event_types=patterns)
    assert answer.status_code == status, answer.text


async def test_update_enable_and_delete(http: httpx.AsyncClient, admin: Tokens) -> None:
    created = (await create(http, admin)).json()
    where = f"/v1/webhooks/{created['id']}"
    changed = await http.patch(
        where,
        json={"enabled": False, "description": "paused", "event_types": ["stock.changed"]},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["enabled"], body["description"], body["event_types"]) == (
        False,
        "paused",
        ["stock.changed"],
    )
    assert body["disabled_reason"] == "disabled by an administrator"
    ping = await http.post(f"{where}/ping", headers=admin.headers)
    assert ping.status_code == 409
    enabled = await http.patch(where, json={"enabled": True}, headers=admin.headers)
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None
    assert (await http.patch(where, json={"bogus": 1}, headers=admin.headers)).status_code == 422

    assert (await http.delete(where, headers=admin.headers)).status_code == 204
    assert (await http.get(where, headers=admin.headers)).status_code == 404
    assert (await http.delete(where, headers=admin.headers)).status_code == 404
    assert (await http.get("/v1/webhooks/01", headers=admin.headers)).status_code == 404


async def test_list_pages(http: httpx.AsyncClient, admin: Tokens) -> None:
    made = [(await create(http, admin)).json()["id"] for _ in range(3)]
    seen: list[int] = []
    url: str | None = "/v1/webhooks?limit=2"
    while url:
        page = await http.get(url, headers=admin.headers)
        assert page.status_code == 200, page.text
        seen += [e["id"] for e in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        url = f"/v1/webhooks?limit=2&cursor={cursor}" if cursor else None
    assert [i for i in seen if i in made] == made
    bad = await http.get("/v1/webhooks?cursor=abc", headers=admin.headers)
    assert bad.status_code == 400


async def test_rotation_keeps_the_old_secret_for_the_grace_period(
    http: httpx.AsyncClient, admin: Tokens, db: asyncpg.Connection, settings: Settings
) -> None:
    created = (await create(http, admin)).json()
    rotated = await http.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"] != created["secret"]
    assert SECRET.fullmatch(body["secret"])
    assert body["previous_secret_valid_until"] is not None
    row = await db.fetchrow(
        "SELECT secret_box, previous_secret_box, previous_valid_until - now() AS left "
        "FROM webhook_endpoints WHERE id = $1",
        created["id"],
    )
    assert row is not None
    box = SecretBox(settings.secret_key)
    assert box.open(row["secret_box"]) == body["secret"]
    assert box.open(row["previous_secret_box"]) == created["secret"]
    assert 3500 < row["left"].total_seconds() <= 3600


async def test_ping_queues_a_delivery_and_redeliver_restarts_it(
    http: httpx.AsyncClient, admin: Tokens, db: asyncpg.Connection
) -> None:
    created = (await create(http, admin)).json()
    where = f"/v1/webhooks/{created['id']}"
    ping = await http.post(f"{where}/ping", headers=admin.headers)
    assert ping.status_code == 202, ping.text
    delivery_id = ping.json()["delivery_id"]
    listed = await http.get(f"{where}/deliveries", headers=admin.headers)
    assert listed.status_code == 200
    [delivery] = listed.json()["data"]
    assert delivery["id"] == delivery_id
    assert delivery["event_type"] == "webhook.ping"
    assert delivery["status"] == "pending"
    assert delivery["message_id"].startswith("msg_")
    assert delivery["attempts"] == []

    await db.execute(
        "UPDATE webhook_deliveries SET status = 'dead', failures = 9 WHERE id = $1", delivery_id
    )
    again = await http.post(f"{where}/deliveries/{delivery_id}/redeliver", headers=admin.headers)
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    assert again.json()["message_id"] == delivery["message_id"]
    assert (
        await db.fetchval("SELECT failures FROM webhook_deliveries WHERE id = $1", delivery_id) == 0
    )
    other = (await create(http, admin)).json()
    foreign = await http.post(
        f"/v1/webhooks/{other['id']}/deliveries/{delivery_id}/redeliver", headers=admin.headers
    )
    assert foreign.status_code == 404


async def test_deliveries_page(http: httpx.AsyncClient, admin: Tokens) -> None:
    created = (await create(http, admin)).json()
    where = f"/v1/webhooks/{created['id']}"
    ids = [
        (await http.post(f"{where}/ping", headers=admin.headers)).json()["delivery_id"]
        for _ in range(3)
    ]
    first = (await http.get(f"{where}/deliveries?limit=2", headers=admin.headers)).json()
    assert [d["id"] for d in first["data"]] == ids[::-1][:2]
    second = await http.get(
        f"{where}/deliveries?limit=2&cursor={first['next_cursor']}", headers=admin.headers
    )
    assert [d["id"] for d in second.json()["data"]] == [ids[0]]
    assert second.json()["next_cursor"] is None
    # A cursor of another endpoint's list is refused.
    other = (await create(http, admin)).json()
    crossed = await http.get(
        f"/v1/webhooks/{other['id']}/deliveries?cursor={first['next_cursor']}",
        headers=admin.headers,
    )
    assert crossed.status_code == 400


async def test_customers_and_staff_may_not(http: httpx.AsyncClient, accounts: Accounts) -> None:
    for role in ("customer", "staff"):
        _, tokens = await accounts.create_and_login(role)
        answer = await http.get("/v1/webhooks", headers=tokens.headers)
        assert answer.status_code == 403
