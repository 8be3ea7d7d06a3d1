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
        self, *, before: tuple[dt.datetime, int] | None, where: AuditFilter, limit: int
    ) -> list[AuditEvent]:
        async with self.db.connection() as conn:
            return await self.audit.page(conn, before=before, where=where, limit=limit)
