"""The delivery worker against real receivers on loopback that verify every signature with the
Standard Webhooks algorithm (tests/fixtures/webhooks.py): events fanned out by event type,
signed (with both secrets during a rotation), retried after a 500, dead after the horizon and
the endpoint disabled (audited); the SSRF guard at delivery (DNS changed since creation, a
rebinding resolver); worker processes killed with SIGKILL mid-batch lose nothing, two at once
never send one attempt twice, SIGTERM lets the attempts in flight finish."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp
from server.commands.worker import run_worker
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings
from server.web.state import app_container
from server.webhooks.metrics import DeliveryMetrics
from server.webhooks.repository import DeliveryQueue
from server.webhooks.signing import SecretBox, new_secret
from server.webhooks.ssrf import UrlGuard
from tests.fixtures.identity import Accounts, Tokens
from tests.fixtures.support import free_port
from tests.fixtures.webhook_worker import loopback_delivery_settings, own_webhooks_db
from tests.fixtures.webhooks import Receiver, running_receiver

__all__ = ["loopback_delivery_settings", "own_webhooks_db"]  # fixtures: settings, migrated_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def admin(accounts: Accounts) -> Tokens:
    return (await accounts.create_and_login("admin"))[1]


@asynccontextmanager
async def worker(
    settings: Settings, logger: FilteringBoundLogger, guard: UrlGuard | None = None
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, logger, stop=stop, guard=guard))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def register(
    http: httpx.AsyncClient, admin: Tokens, receiver: Receiver, *patterns: str
) -> dict[str, Any]:
    answer = await http.post(
        "/v1/webhooks",
        json={"url": receiver.url, "event_types": list(patterns or ["*"])},
        headers=admin.headers,
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    receiver.secrets.append(body["secret"])
    return body


async def add_events(db: asyncpg.Connection, count: int, topic: str = "order.placed") -> None:
    await db.execute(
        "INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload) "
        "SELECT $1, 'order', g::text, jsonb_build_object('n', g) FROM generate_series(1, $2) g",
        topic,
        count,
    )


async def deliveries(http: httpx.AsyncClient, admin: Tokens, endpoint_id: int) -> list[Any]:
    answer = await http.get(
        f"/v1/webhooks/{endpoint_id}/deliveries?limit=100", headers=admin.headers
    )
    assert answer.status_code == 200, answer.text
    data: list[Any] = answer.json()["data"]
    return data


async def test_events_reach_matching_endpoints_signed(
    http: httpx.AsyncClient, admin: Tokens, settings: Settings, logger: FilteringBoundLogger
) -> None:
    with running_receiver(Receiver()) as orders, running_receiver(Receiver()) as products:
        order_hook = await register(http, admin, orders, "order.*")
        await register(http, admin, products, "product.created")
        async with worker(settings, logger):
            product = await http.post(
                "/v1/products",
                json={
                    "sku": "hook-1",
                    "name": "Hooked",
                    "category": "tools",
                    "price": {"amount_minor": 100, "currency": "EUR"},
                    "stock": 3,
                },
                headers=admin.headers,
            )
            assert product.status_code == 201, product.text
            order = await http.post(
                "/v1/orders",
                json={"items": [{"product_id": product.json()["id"], "quantity": 1}]},
                headers={**admin.headers, "idempotency-key": "hook-order-1"},
            )
            assert order.status_code == 201, order.text

            async def both() -> bool:
                return len(orders.received) >= 1 and len(products.received) >= 1

            await eventually(both)
            await asyncio.sleep(0.3)  # anything else that should not come
        assert orders.bad == []
        assert products.bad == []
        [placed] = orders.received
        [created] = products.received
        assert orjson.loads(placed.body)["type"] == "order.placed"
        assert orjson.loads(placed.body)["data"]["id"] == order.json()["id"]
        assert orjson.loads(created.body)["type"] == "product.created"
        assert placed.verified_with == orders.secrets
        assert placed.headers["content-type"] == "application/json"
        assert placed.headers["webhook-id"].startswith("msg_")
        assert abs(int(placed.headers["webhook-timestamp"]) - time.time()) < 30
        [delivery] = await deliveries(http, admin, order_hook["id"])
        assert delivery["status"] == "succeeded"
        assert delivery["message_id"] == placed.headers["webhook-id"]
        [attempt] = delivery["attempts"]
        assert (attempt["outcome"], attempt["response_status"]) == ("succeeded", 200)
        assert attempt["latency_ms"] >= 0


async def test_a_500_is_retried_under_the_same_id(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    with running_receiver(Receiver(answer=lambda n: 500 if n == 0 else 200)) as receiver:
        hook = await register(http, admin, receiver, "order.*")
        await add_events(db, 1)
        async with worker(settings, logger):

            async def done() -> bool:
                return [d["status"] for d in await deliveries(http, admin, hook["id"])] == [
                    "succeeded"
                ]

            await eventually(done)
    assert [r.status for r in receiver.received] == [500, 200]
    assert len(set(receiver.ids())) == 1
    assert receiver.bad == []
    [delivery] = await deliveries(http, admin, hook["id"])
    assert [(a["attempt"], a["outcome"], a["response_status"]) for a in delivery["attempts"]] == [
        (1, "failed", 500),
        (2, "succeeded", 200),
    ]
    assert delivery["attempts"][0]["error"] == "HTTP 500"


async def test_rotation_sends_both_signatures_until_the_grace_ends(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    with running_receiver(Receiver()) as receiver:
        hook = await register(http, admin, receiver, "order.*")
        old = receiver.secrets[0]
        rotated = await http.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=admin.headers)
        new = rotated.json()["secret"]
        receiver.secrets.append(new)
        await add_events(db, 1)
        async with worker(settings, logger):
            await eventually(lambda: _count(receiver, 1))
            # Once the grace period is over only the new secret signs.
            await db.execute(
                "UPDATE webhook_endpoints SET previous_valid_until = now() WHERE id = $1",
                hook["id"],
            )
            await add_events(db, 1)
            await eventually(lambda: _count(receiver, 2))
    first, second = receiver.received
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    assert first.verified_with == [old, new]
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    assert second.verified_with == [new]


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def test_dead_after_the_horizon_and_the_endpoint_disabled(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    settings = dataclasses.replace(
        settings, webhook_retry_horizon_seconds=2.0, webhook_disable_after_seconds=0.0
    )
    with running_receiver(Receiver(answer=lambda n: 503)) as receiver:
        hook = await register(http, admin, receiver, "order.*")
        await add_events(db, 1)
        # A horizon of 2 s: the delivery is made with it by this worker's fan-out.
        async with worker(settings, logger):

            async def disabled() -> bool:
                answer = await http.get(f"/v1/webhooks/{hook['id']}", headers=admin.headers)
                return answer.json()["enabled"] is False

            await eventually(disabled)
    endpoint = (await http.get(f"/v1/webhooks/{hook['id']}", headers=admin.headers)).json()
    assert endpoint["disabled_reason"] == "failing deliveries"
    [delivery] = await deliveries(http, admin, hook["id"])
    assert delivery["status"] == "dead"
    assert len(delivery["attempts"]) >= 1  # how many fit in 2 s depends on the box
    assert all(a["response_status"] == 503 for a in delivery["attempts"])
    audit = await db.fetch(
        "SELECT action, actor_id FROM audit_events WHERE target_type = 'webhook' "
        "AND target_id = $1 ORDER BY id",
        str(hook["id"]),
    )
    assert [r["action"] for r in audit][-1] == "webhook.disabled"
    assert audit[-1]["actor_id"] is None
    # Visible, and redeliverable once the endpoint is enabled again.
    enabled = await http.patch(
        f"/v1/webhooks/{hook['id']}", json={"enabled": True}, headers=admin.headers
    )
    assert enabled.json()["failing_since"] is None
    again = await http.post(
        f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin.headers
    )
    assert again.status_code == 202


async def test_ping(
    http: httpx.AsyncClient, admin: Tokens, settings: Settings, logger: FilteringBoundLogger
) -> None:
    with running_receiver(Receiver()) as receiver:
        hook = await register(http, admin, receiver, "order.*")
        async with worker(settings, logger):
            ping = await http.post(f"/v1/webhooks/{hook['id']}/ping", headers=admin.headers)
            assert ping.status_code == 202
            await eventually(lambda: _count(receiver, 1))
    body = orjson.loads(receiver.received[0].body)
    assert body["type"] == "webhook.ping"
    assert body["data"] == {"endpoint_id": hook["id"]}
    assert receiver.bad == []


async def test_metrics(
    app: HotpathApp,
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    registry = CollectorRegistry()
    port = free_port()
    settings = dataclasses.replace(settings, worker_metrics_port=port)
    with running_receiver(Receiver(answer=lambda n: 500 if n == 0 else 200)) as receiver:
        hook = await register(http, admin, receiver, "order.*")
        await add_events(db, 1)
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(settings, logger, stop=stop, registry=registry))
        try:

            async def done() -> bool:
                found = await deliveries(http, admin, hook["id"])
                return [d["status"] for d in found] == ["succeeded"]

            await eventually(done)
            async with httpx.AsyncClient() as scraper:
                scraped = await scraper.get(f"http://127.0.0.1:{port}/metrics")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    value = registry.get_sample_value
    assert value("webhook_attempts_total", {"outcome": "failed"}) == 1
    assert value("webhook_attempts_total", {"outcome": "succeeded"}) == 1
    assert value("webhook_attempt_duration_seconds_count", {"outcome": "failed"}) == 1
    assert value("webhook_deliveries_finished_total", {"status": "succeeded"}) == 1
    assert value("webhook_deliveries_finished_total", {"status": "dead"}) == 0
    assert scraped.status_code == 200
    assert 'webhook_attempts_total{outcome="succeeded"} 1.0' in scraped.text
    assert "webhook_deliveries_pending" in scraped.text

    # The backlog: what waits and for how long (measured every few seconds; here at once).
    await db.execute("UPDATE webhook_endpoints SET enabled = false")
    await add_events(db, 3)
    await db.execute(
        "UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE published_at IS NULL"
    )
    metrics = DeliveryMetrics(CollectorRegistry())
    queue = DeliveryQueue(load_queries())
    async with app_container(app).db.connection() as conn:
        metrics.backlog(*await queue.backlog(conn))
    assert metrics.events_waiting._value.get() == 3
    assert 89 <= metrics.events_age._value.get() < 200
    assert metrics.pending._value.get() == 0


# --- SSRF at delivery -------------------------------------------------------------------------


async def _endpoint_in_db(db: asyncpg.Connection, settings: Settings, url: str) -> int:
    """An endpoint as if its host had resolved to a public address when it was made."""
    box = SecretBox(settings.secret_key)
    endpoint_id: int = await db.fetchval(
        "INSERT INTO webhook_endpoints (url, event_types, secret_box) "
        "VALUES ($1, '{order.*}', $2) RETURNING id",
        url,
        box.seal(new_secret()),
    )
    return endpoint_id


async def test_a_host_that_now_resolves_to_loopback_is_refused_at_delivery(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    guard = UrlGuard(allow_http=True, resolver=rebound)  # no allowlist: loopback is refused
    with running_receiver(Receiver()) as receiver:
        endpoint_id = await _endpoint_in_db(
            db, settings, f"http://hooks.example.com:{receiver.port}/hooks"
        )
        await add_events(db, 1)
        async with worker(settings, logger, guard=guard):

            async def tried() -> bool:
                return bool(await db.fetchval("SELECT count(*) FROM webhook_attempts"))

            await eventually(tried)
    assert receiver.received == []
    [delivery] = await deliveries(http, admin, endpoint_id)
    attempt = delivery["attempts"][0]
    assert attempt["outcome"] == "blocked"
    assert "loopback" in attempt["error"]
    assert delivery["status"] == "pending"  # DNS may change back: retried on schedule


async def test_a_rebinding_resolver_cannot_redirect_the_connection(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    """The name is resolved once per connection and the checked address is the one connected
    to: a resolver answering a public address to the check and loopback after never gets the
    request to loopback."""
    answers: Counter[str] = Counter()

    async def rebinding(host: str, port: int) -> list[str]:
        answer = "192.0.2.1" if not answers else "127.0.0.1"
        answers[answer] += 1
        # TEST-NET-1 is refused too; allowlisted below as if it were a public address.
        return [answer]

    guard = UrlGuard(allow_http=True, allow_networks=["192.0.2.0/24"], resolver=rebinding)
    settings = dataclasses.replace(settings, webhook_timeout=0.5)
    with running_receiver(Receiver()) as receiver:
        endpoint_id = await _endpoint_in_db(
            db, settings, f"http://hooks.example.com:{receiver.port}/hooks"
        )
        await add_events(db, 1)
        async with worker(settings, logger, guard=guard):

            async def tried() -> bool:
                return bool(await db.fetchval("SELECT count(*) FROM webhook_attempts"))

            await eventually(tried)
    assert receiver.received == []
    [delivery] = await deliveries(http, admin, endpoint_id)
    assert delivery["attempts"][0]["outcome"] == "failed"  # 192.0.2.1 does not answer
    assert answers["192.0.2.1"] == 1


# --- worker processes ---------------------------------------------------------------------------


@contextmanager
def worker_processes(
    settings: Settings, count: int, tmp: Path, **extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "HOTPATH_SECRET_KEY": settings.secret_key,
        "HOTPATH_DATA_DIR": str(tmp),
        "HOTPATH_EMBEDDED_DB": "false",
        "HOTPATH_LOG_LEVEL": "warning",
        "HOTPATH_WEBHOOK_ALLOW_HTTP": "true",
        "HOTPATH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        "HOTPATH_WEBHOOK_POLL_SECONDS": "0.05",
        "HOTPATH_WEBHOOK_TIMEOUT": "1",
        "HOTPATH_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "HOTPATH_WEBHOOK_ENDPOINT_CONCURRENCY": "8",
        **extra,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "server", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / f"worker-{i}.log", "wb"),  # noqa: SIM115
        )
        for i in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


async def _all_succeeded(db: asyncpg.Connection, total: int) -> bool:
    done = await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
    return bool(done == total)


@pytest.mark.slow
async def test_sigkill_mid_batch_loses_nothing(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    total = 60
    with running_receiver(Receiver(delay=0.05)) as receiver:
        await register(http, admin, receiver, "order.*")
        await add_events(db, total)
        with worker_processes(settings, 1, tmp_path) as [first]:
            await eventually(lambda: _count(receiver, 10), seconds=30)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        got_before = len(receiver.received)
        assert got_before < total, "the worker finished before it was killed"
        with worker_processes(settings, 1, tmp_path):
            await eventually(lambda: _all_succeeded(db, total), seconds=60)
    expected = {
        r["message_id"] for r in await db.fetch("SELECT message_id FROM webhook_deliveries")
    }
    assert len(expected) == total
    assert set(receiver.ids()) == expected  # every event at least once
    assert receiver.bad == []
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


@pytest.mark.slow
async def test_two_workers_never_send_one_attempt_twice(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    total = 150
    with running_receiver(Receiver(delay=0.01)) as receiver:
        await register(http, admin, receiver, "order.*")
        await register(http, admin, receiver, "*")
        with worker_processes(settings, 2, tmp_path, HOTPATH_WEBHOOK_TIMEOUT="10"):
            await add_events(db, total)
            await eventually(lambda: _all_succeeded(db, 2 * total), seconds=60)
            await asyncio.sleep(0.5)
    # Two endpoints share one receiver: each message id arrives once per endpoint, and every
    # request the receiver got is one recorded attempt (a second sender of an attempt would
    # make more requests than attempts).
    counts = Counter(receiver.ids())
    assert len(counts) == total
    assert set(counts.values()) == {2}
    answered = await db.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE response_status IS NOT NULL"
    )
    assert len(receiver.received) == answered == 2 * total
    assert receiver.bad == []


@pytest.mark.slow
async def test_sigterm_lets_attempts_in_flight_finish(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    with running_receiver(Receiver(delay=0.5)) as receiver:
        await register(http, admin, receiver, "order.*")
        await add_events(db, 4)
        with worker_processes(settings, 1, tmp_path, HOTPATH_WEBHOOK_TIMEOUT="5") as [process]:
            await eventually(lambda: _count(receiver, 1), seconds=30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
        pending = await db.fetch(
            "SELECT status, claim_token FROM webhook_deliveries WHERE status <> 'succeeded'"
        )
        # Whatever was not finished was released (no claim left behind, due again now).
        assert all(r["claim_token"] is None for r in pending)
        # Every request the receiver answered was written down before the worker exited.
        answered = await db.fetchval(
            "SELECT count(*) FROM webhook_attempts WHERE response_status IS NOT NULL"
        )
        assert answered == len(receiver.received)
        with worker_processes(settings, 1, tmp_path):
            await eventually(lambda: _all_succeeded(db, 4), seconds=30)


async def test_a_secret_sealed_under_another_key_is_a_failed_attempt_that_says_so(
    http: httpx.AsyncClient,
    admin: Tokens,
    settings: Settings,
    logger: FilteringBoundLogger,
    db: asyncpg.Connection,
) -> None:
    with running_receiver(Receiver()) as receiver:
        other_key = SecretBox("another secret key, not this deployment's one")
        endpoint_id = await db.fetchval(
            "INSERT INTO webhook_endpoints (url, event_types, secret_box) "
            "VALUES ($1, '{order.*}', $2) RETURNING id",
            receiver.url,
            other_key.seal(new_secret()),
        )
        await add_events(db, 1)
        async with worker(settings, logger):

            async def tried() -> bool:
                return bool(await db.fetchval("SELECT count(*) FROM webhook_attempts"))

            await eventually(tried)
    assert receiver.received == []
    [delivery] = await deliveries(http, admin, endpoint_id)
    assert delivery["status"] == "pending"
    assert "HOTPATH_SECRET_KEY changed" in delivery["attempts"][0]["error"]
