"""The transactional outbox: an event row written in the same transaction as the change it
describes, for webhook delivery later (a worker reads rows with FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

from typing import Any

from server.db import Connection
from server.sqlfiles import Queries


class Outbox:
    def __init__(self, queries: Queries) -> None:
        self._create = queries.sql("create_outbox_event")

    async def add(
        self, conn: Connection, topic: str, aggregate: str, aggregate_id: object, payload: Any
    ) -> None:
        await conn.execute(self._create, topic, aggregate, str(aggregate_id), payload)
