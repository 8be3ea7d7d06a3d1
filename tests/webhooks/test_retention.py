"""Retention: the worker deletes outbox events published, and deliveries finished, longer ago
than HOTPATH_OUTBOX_RETENTION_SECONDS, a batch at a time; nothing pending goes."""

from __future__ import annotations

import datetime as dt

import asyncpg
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp
from server.audit.repository import AuditRepository
from server.db.sqlfiles import load_queries
from server.web.state import app_container
from server.webhooks.delivery import DeliveryWorker, WorkerConfig
from server.webhooks.repository import DeliveryQueue
from server.webhooks.sender import Sender
from server.webhooks.signing import SecretBox, new_secret
from server.webhooks.ssrf import UrlGuard

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


async def test_old_published_events_and_finished_deliveries_are_pruned(
    app: HotpathApp,
    http: object,
    db: asyncpg.Connection,
    logger: FilteringBoundLogger,
) -> None:
    services = app_container(app)
    events = {
        name: await db.fetchval(
            "INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, published_at) "
            "VALUES ('order.placed', 'order', '1', '{}', now() - $1::interval) RETURNING id",
            age,
        )
        for name, age in (("old", HOUR * 2), ("recent", MINUTE))
    }
    unpublished = await db.fetchval(
        "INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, created_at) "
        "VALUES ('order.placed', 'order', '1', '{}', now() - interval '3 hours') RETURNING id"
    )
    endpoint = await db.fetchval(
        "INSERT INTO webhook_endpoints (url, event_types, secret_box) "
        "VALUES ('https://93.184.215.14/', '{order.*}', $1) RETURNING id",
        SecretBox(services.settings.secret_key).seal(new_secret()),
    )
    deliveries = {}
    for name, status, age in (
        ("old-succeeded", "succeeded", HOUR * 2),
        ("old-dead", "dead", HOUR * 3),
        ("old-pending", "pending", None),
        ("recent-succeeded", "succeeded", MINUTE * 5),
    ):
        deliveries[name] = await db.fetchval(
            "INSERT INTO webhook_deliveries (endpoint_id, message_id, event_type, body, status, "
            "created_at, retry_until, finished_at) VALUES ($1, $2, 'order.placed', '{}', $3, "
            "now() - interval '4 hours', now(), now() - $4::interval) RETURNING id",
            endpoint,
            f"msg_{name}",
            status,
            age,
        )
    await db.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, outcome) "
        "VALUES ($1, 1, now() - interval '2 hours', 5, 'succeeded')",
        deliveries["old-succeeded"],
    )
    guard = UrlGuard(allow_http=False)
    worker = DeliveryWorker(
        services.db,
        queue=DeliveryQueue(load_queries()),
        audit=AuditRepository(load_queries()),
        sender=Sender(guard, timeout=1, connections=1),
        box=SecretBox(services.settings.secret_key),
        # A batch of one: pruning goes on until nothing is left.
        config=WorkerConfig(retention_seconds=3600, prune_batch=1),
        logger=logger,
    )
    pruned = await worker.prune_once()
    assert pruned[0] >= 1
    assert pruned[1] >= 2
    left = {r["id"] for r in await db.fetch("SELECT id FROM outbox")}
    assert events["old"] not in left
    assert {events["recent"], unpublished} <= left
    kept = {r["id"] for r in await db.fetch("SELECT id FROM webhook_deliveries")}
    assert deliveries["old-succeeded"] not in kept
    assert deliveries["old-dead"] not in kept
    assert {deliveries["old-pending"], deliveries["recent-succeeded"]} <= kept
    assert not await db.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1", deliveries["old-succeeded"]
    )
    off = DeliveryWorker(
        services.db,
        queue=DeliveryQueue(load_queries()),
        audit=AuditRepository(load_queries()),
        sender=Sender(guard, timeout=1, connections=1),
        box=SecretBox(services.settings.secret_key),
        config=WorkerConfig(retention_seconds=0),
        logger=logger,
    )
    assert await off.prune_once() == (0, 0)
