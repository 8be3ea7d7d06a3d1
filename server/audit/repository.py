"""The append-only audit trail: events in, pages of events out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from server.db.database import Connection, record_to
from server.db.sqlfiles import Queries
from server.web.context import RequestContext


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    occurred_at: dt.datetime
    action: str
    outcome: str
    actor_id: int | None
    target_type: str
    target_id: str
    ip: str
    user_agent: str
    request_id: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewAuditEvent:
    action: str
    outcome: str
    actor_id: int | None = None
    target_type: str = ""
    target_id: str = ""
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor_id: int | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class AuditRepository:
    def __init__(self, queries: Queries) -> None:
        self._create = queries.sql("create_audit_event")
        self._list = queries.sql("list_audit_events")

    async def add(self, conn: Connection, event: NewAuditEvent) -> None:
        await conn.execute(
            self._create,
            event.action,
            event.outcome,
            event.actor_id,
            event.target_type,
            event.target_id,
            event.ip,
            event.user_agent,
            event.request_id,
            event.details,
        )

    async def record(
        self,
        conn: Connection,
        ctx: RequestContext,
        action: str,
        *,
        outcome: str = "success",
        actor_id: int | None = None,
        target_type: str = "",
        target_id: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        """One event caused by the request ``ctx`` describes (its address, agent and id)."""
        await self.add(
            conn,
            NewAuditEvent(
                action=action,
                outcome=outcome,
                actor_id=actor_id,
                target_type=target_type,
                target_id=target_id,
                ip=ctx.ip,
                user_agent=ctx.user_agent,
                request_id=ctx.request_id,
                details=dict(details or {}),
            ),
        )

    async def page(
        self,
        conn: Connection,
        *,
        before: tuple[dt.datetime, int] | None,
        where: AuditFilter,
        limit: int,
    ) -> list[AuditEvent]:
        occurred, last_id = before if before else (None, None)
        records = await conn.fetch(
            self._list,
            occurred,
            last_id,
            where.actor_id,
            where.action,
            where.target_type,
            where.target_id,
            where.since,
            where.until,
            limit,
        )
        return [record_to(AuditEvent, r) for r in records]
