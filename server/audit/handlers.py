"""HTTP in/out for the audit trail."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.audit import schemas
from server.audit.repository import AuditFilter
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.pagination import paged_response
from server.web.responses import read_query
from server.web.state import container

_LIST_SCOPE = "audit"


@api(
    summary="Audit events, newest first",
    description="Filters: `actor_id`, `action`, `target_type`, `target_id`, `since`, `until` "
    "(RFC 3339). Keyset pagination with `limit` and `cursor`. With read replicas the list "
    "may come from one: the caller's own changes are in it at once, others' may be missing "
    "for up to the replica lag allowed (a second by default).",
    tags=("audit",),
    query=schemas.AuditQuery,
    responses={200: schemas.AuditList},
    errors=(400, 422),
)
async def list_audit_events(request: Request) -> Response:
    query = read_query(request, schemas.AuditQuery)
    services = container(request)
    before = services.cursors.decode(_LIST_SCOPE, query.cursor) if query.cursor else None
    where = AuditFilter(
        query.actor_id, query.action, query.target_type, query.target_id, query.since, query.until
    )
    # The caller's own latest change is listed at once, others' within the replica lag.
    reader = principal_of(request).user_id
    rows = await services.audit.page(
        before=before, where=where, limit=query.limit + 1, reader=reader
    )
    return paged_response(
        request,
        rows,
        limit=query.limit,
        cursors=services.cursors,
        scope=_LIST_SCOPE,
        position=lambda e: (e.occurred_at, e.id),
        view=schemas.event_view,
    )
