"""What services record about the request that caused a change (for the audit trail)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

_MAX_USER_AGENT = 256


@dataclass(frozen=True, slots=True)
class RequestContext:
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""


def request_context(request: Request) -> RequestContext:
    client = request.client
    rid = request.scope.get("request_id")
    return RequestContext(
        ip=client.host if client else "",
        user_agent=request.headers.get("user-agent", "")[:_MAX_USER_AGENT],
        request_id=rid if isinstance(rid, str) else "",
    )
