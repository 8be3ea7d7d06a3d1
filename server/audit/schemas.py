"""Shapes of the audit endpoint."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec

from server.audit.repository import AuditEvent
from server.web.instants import Instant, check_storable
from server.web.schemas import DEFAULT_LIMIT, PageLimit, Strict


class AuditEventView(msgspec.Struct):
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


class AuditList(msgspec.Struct):
    data: list[AuditEventView]
    next_cursor: str | None


# actor_id is a PostgreSQL bigint: a larger value would fail in the driver (a 500).
BigInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class AuditQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None
    actor_id: BigInt | None = None
    action: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    target_type: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    target_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    since: Instant | None = None
    until: Instant | None = None

    def __post_init__(self) -> None:
        check_storable(since=self.since, until=self.until)


def event_view(event: AuditEvent) -> AuditEventView:
    return AuditEventView(**{f: getattr(event, f) for f in AuditEventView.__struct_fields__})
