"""Webhook endpoints, deliveries and attempts in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from server.db.database import Connection, record_to
from server.db.sqlfiles import Queries
from server.runtime.tracing import current_traceparent


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    rotated_at: dt.datetime | None
    previous_valid_until: dt.datetime | None
    failing_since: dt.datetime | None
    disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: int
    attempt: int
    started_at: dt.datetime
    latency_ms: int
    outcome: str
    response_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint_id: int
    event_id: int | None
    message_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker claimed for one attempt, with what it needs to send it."""

    id: int
    endpoint_id: int
    message_id: str
    event_type: str
    body: str
    attempts: int
    failures: int
    retry_until: dt.datetime
    traceparent: str | None  # of the request that caused it (docs/observability.md, Tracing)
    url: str
    secret_box: bytes
    previous_secret_box: bytes | None
    previous_valid_until: dt.datetime | None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    topic: str
    aggregate_type: str
    aggregate_id: str
    payload: object
    created_at: dt.datetime
    traceparent: str | None


@dataclass(frozen=True, slots=True)
class NewAttempt:
    delivery_id: int
    attempt: int
    started_at: dt.datetime
    latency_ms: int
    outcome: str
    response_status: int | None
    error: str | None
    response_excerpt: str | None


def _endpoint(record: asyncpg.Record) -> Endpoint:
    return record_to(Endpoint, record)


class WebhooksRepository:
    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._create = q("create_webhook_endpoint")
        self._get = q("get_webhook_endpoint")
        self._list = q("list_webhook_endpoints")
        self._update = q("update_webhook_endpoint")
        self._delete = q("delete_webhook_endpoint")
        self._rotate = q("update_webhook_endpoint_secret")
        self._ping = q("create_webhook_ping")
        self._delivery = q("get_webhook_delivery")
        self._deliveries = q("list_webhook_deliveries")
        self._attempts = q("list_webhook_attempts")
        self._redeliver = q("update_webhook_delivery_redeliver")

    async def create(
        self,
        conn: Connection,
        *,
        url: str,
        description: str,
        event_types: Sequence[str],
        secret_box: bytes,
        created_by: int,
    ) -> Endpoint:
        record = await conn.fetchrow(
            self._create, url, description, list(event_types), secret_box, created_by
        )
        assert record is not None
        return _endpoint(record)

    async def get(self, conn: Connection, endpoint_id: int) -> Endpoint | None:
        record = await conn.fetchrow(self._get, endpoint_id)
        return None if record is None else _endpoint(record)

    async def page(
        self, conn: Connection, *, after: tuple[dt.datetime, int] | None, limit: int
    ) -> list[Endpoint]:
        created, last_id = after if after else (None, None)
        return [_endpoint(r) for r in await conn.fetch(self._list, created, last_id, limit)]

    async def update(
        self, conn: Connection, endpoint_id: int, changes: EndpointChanges
    ) -> Endpoint | None:
        record = await conn.fetchrow(
            self._update,
            endpoint_id,
            changes.url,
            changes.description,
            changes.event_types,
            changes.enabled,
        )
        return None if record is None else _endpoint(record)

    async def delete(self, conn: Connection, endpoint_id: int) -> bool:
        return await conn.execute(self._delete, endpoint_id) != "DELETE 0"

    async def rotate(
        self, conn: Connection, endpoint_id: int, secret_box: bytes, old_valid_until: dt.datetime
    ) -> Endpoint | None:
        record = await conn.fetchrow(self._rotate, endpoint_id, secret_box, old_valid_until)
        return None if record is None else _endpoint(record)

    async def create_ping(
        self, conn: Connection, endpoint_id: int, message_id: str, body: str, retry_seconds: float
    ) -> int:
        # The ping's delivery links back to the request that asked for it, as an event's does.
        value = await conn.fetchval(
            self._ping, endpoint_id, message_id, body, retry_seconds, current_traceparent()
        )
        assert isinstance(value, int)
        return value

    async def delivery(
        self, conn: Connection, endpoint_id: int, delivery_id: int
    ) -> Delivery | None:
        record = await conn.fetchrow(self._delivery, delivery_id, endpoint_id)
        return None if record is None else record_to(Delivery, record)

    async def deliveries(
        self, conn: Connection, endpoint_id: int, *, before: int | None, limit: int
    ) -> list[Delivery]:
        records = await conn.fetch(self._deliveries, endpoint_id, before, limit)
        return [record_to(Delivery, r) for r in records]

    async def attempts(self, conn: Connection, delivery_ids: Sequence[int]) -> list[Attempt]:
        records = await conn.fetch(self._attempts, list(delivery_ids))
        return [record_to(Attempt, r) for r in records]

    async def redeliver(
        self, conn: Connection, endpoint_id: int, delivery_id: int, retry_seconds: float
    ) -> bool:
        found = await conn.fetchval(self._redeliver, delivery_id, endpoint_id, retry_seconds)
        return found is not None


class DeliveryQueue:
    """What the worker does to the tables: claim events and deliveries, record outcomes."""

    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._events = q("list_outbox_events_to_publish")
        self._published = q("update_outbox_published")
        self._enabled = q("list_webhook_endpoints_enabled")
        self._fan_out = q("create_webhook_deliveries")
        self._claim = q("update_webhook_deliveries_claim")
        self._attempt = q("create_webhook_attempt")
        self._succeeded = q("update_webhook_delivery_succeeded")
        self._failed = q("update_webhook_delivery_failed")
        self._released = q("update_webhook_delivery_released")
        self._endpoint_ok = q("update_webhook_endpoint_succeeded")
        self._endpoint_failing = q("update_webhook_endpoint_failing")
        self._kill_pending = q("update_webhook_deliveries_dead_for_endpoint")
        self._prune_outbox = q("delete_outbox_published")
        self._prune_deliveries = q("delete_webhook_deliveries_finished")
        self._backlog = q("get_webhook_backlog")

    async def claim_events(self, conn: Connection, limit: int) -> list[OutboxEvent]:
        return [record_to(OutboxEvent, r) for r in await conn.fetch(self._events, limit)]

    async def mark_published(self, conn: Connection, event_ids: Sequence[int]) -> None:
        await conn.execute(self._published, list(event_ids))

    async def enabled_endpoints(self, conn: Connection) -> list[tuple[int, list[str]]]:
        return [(r["id"], list(r["event_types"])) for r in await conn.fetch(self._enabled)]

    async def fan_out(
        self,
        conn: Connection,
        rows: Sequence[tuple[int, int, str, str, str, str | None]],
        retry_seconds: float,
    ) -> None:
        """rows: (endpoint id, event id, message id, event type, body, traceparent)."""
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        await conn.execute(self._fan_out, *[list(c) for c in columns], retry_seconds)

    async def claim(
        self,
        conn: Connection,
        *,
        limit: int,
        per_endpoint: int,
        skip_endpoints: Sequence[int],
        lease_seconds: float,
        token: uuid.UUID,
    ) -> list[Claimed]:
        records = await conn.fetch(
            self._claim, limit, per_endpoint, list(skip_endpoints), lease_seconds, token
        )
        return [record_to(Claimed, r) for r in records]

    async def succeeded(
        self, conn: Connection, delivery_id: int, token: uuid.UUID, attempt: NewAttempt
    ) -> bool:
        endpoint_id = await conn.fetchval(self._succeeded, delivery_id, token)
        if endpoint_id is None:
            return False
        await self._record(conn, attempt)
        await conn.execute(self._endpoint_ok, endpoint_id)
        return True

    async def failed(
        self,
        conn: Connection,
        delivery_id: int,
        token: uuid.UUID,
        attempt: NewAttempt,
        retry_at: dt.datetime,
    ) -> tuple[int, str] | None:
        """(endpoint id, new status) or None when the claim was no longer ours."""
        record = await conn.fetchrow(self._failed, delivery_id, token, retry_at)
        if record is None:
            return None
        await self._record(conn, attempt)
        return record["endpoint_id"], record["status"]

    async def endpoint_failing(
        self, conn: Connection, endpoint_id: int, *, died: bool, disable_after: float
    ) -> bool:
        """Records the failure; True when it disabled the endpoint just now."""
        return bool(await conn.fetchval(self._endpoint_failing, endpoint_id, died, disable_after))

    async def kill_pending(self, conn: Connection, endpoint_id: int) -> None:
        await conn.execute(self._kill_pending, endpoint_id)

    async def release(
        self, conn: Connection, delivery_id: int, token: uuid.UUID, *, sent: bool
    ) -> None:
        await conn.execute(self._released, delivery_id, token, 0 if sent else 1)

    async def prune(self, conn: Connection, *, older_than: float, limit: int) -> tuple[int, int]:
        """(outbox events, deliveries) deleted: published or finished before ``older_than``
        seconds ago, at most ``limit`` of each."""
        events = await conn.execute(self._prune_outbox, older_than, limit)
        deliveries = await conn.execute(self._prune_deliveries, older_than, limit)
        return _rows(events), _rows(deliveries)

    async def backlog(self, conn: Connection) -> tuple[int, float, int, float]:
        """(unpublished events, the oldest's age, pending deliveries, the oldest's age)."""
        r = await conn.fetchrow(self._backlog)
        assert r is not None
        return r["events"], r["events_age"], r["deliveries"], r["deliveries_age"]

    async def _record(self, conn: Connection, attempt: NewAttempt) -> None:
        await conn.execute(
            self._attempt,
            attempt.delivery_id,
            attempt.attempt,
            attempt.started_at,
            attempt.latency_ms,
            attempt.outcome,
            attempt.response_status,
            attempt.error,
            attempt.response_excerpt,
        )


def _rows(status: str) -> int:
    """The row count of a command tag such as ``DELETE 42``."""
    return int(status.rsplit(" ", 1)[-1])
