"""Reading the audit trail (writes happen inside the services that cause the events)."""

from __future__ import annotations

import datetime as dt

from server.audit.repository import AuditEvent, AuditFilter, AuditRepository
from server.db.database import Database


class AuditService:
    def __init__(self, db: Database, *, audit: AuditRepository) -> None:
        self.db = db
        self.audit = audit

    async def page(
        self,
        *,
        before: tuple[dt.datetime, int] | None,
        where: AuditFilter,
        limit: int,
        reader: int,
    ) -> list[AuditEvent]:
        """From a read replica when there is one that has replayed ``reader``'s (a user id)
        latest write (their own changes are listed at once; others' within the replica lag),
        else the primary (server/db/replicas.py)."""
        db = await self.db.lag_tolerant_for(reader)
        async with db.connection() as conn:
            return await self.audit.page(conn, before=before, where=where, limit=limit)
