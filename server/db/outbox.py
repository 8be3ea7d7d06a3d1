"""The transactional outbox: an event row written in the same transaction as the change it
describes, so no committed change goes without its event. The webhook worker
(server/webhooks/delivery.py) claims the rows (FOR UPDATE SKIP LOCKED), fans them out to the
endpoints that subscribe and marks them published; published rows go after
HOTPATH_OUTBOX_RETENTION_SECONDS.

Each row also keeps the W3C traceparent of the request that wrote it (``current_traceparent``:
the server span with tracing on, a valid one the caller sent with tracing off, else NULL),
read here from the request's context so the services that write events need not pass it: the
worker's spans link to it and its log lines name it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from server.db.database import Connection
from server.db.sqlfiles import Queries
from server.runtime.tracing import current_traceparent


class Event(NamedTuple):
    """One outbox row to write: ``topic`` names what happened to the ``aggregate`` (its type)
    whose id is ``aggregate_id``; ``payload`` is JSON-encodable. Immutable as a tuple: a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) cost an order more than
    building its payload (issue 19)."""

    topic: str
    aggregate: str
    aggregate_id: object
    payload: Any


class Outbox:
    def __init__(self, queries: Queries) -> None:
        self._create = queries.sql("create_outbox_event")
        self._create_many = queries.sql("create_outbox_events")

    async def add(
        self, conn: Connection, topic: str, aggregate: str, aggregate_id: object, payload: Any
    ) -> None:
        await conn.execute(
            self._create, topic, aggregate, str(aggregate_id), payload, current_traceparent()
        )

    async def add_all(self, conn: Connection, events: Sequence[Event]) -> None:
        """``events`` in one round trip, in their order (an order's and its stock changes)."""
        if events:
            await conn.execute(self._create_many, *self.arguments(events))

    def arguments(self, events: Sequence[Event]) -> tuple[object, ...]:
        """``create_outbox_events``' five arguments for ``events``, for a statement that writes
        them beside its own work (an order's stored answer: ``create_idempotency_key_and_events``
        in sql/orders.sql), so they cost no round trip of their own."""
        # One pass over the events, not a comprehension (a frame each) per column.
        topics: list[str] = []
        aggregates: list[str] = []
        ids: list[str] = []
        payloads: list[str] = []
        for event in events:
            topics.append(event.topic)
            aggregates.append(event.aggregate)
            ids.append(str(event.aggregate_id))
            payloads.append(orjson.dumps(event.payload).decode())
        return topics, aggregates, ids, payloads, current_traceparent()
