"""What services record about the request that caused a change (for the audit trail)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Scope

_MAX_USER_AGENT = 256


@dataclass(frozen=True, slots=True)
class RequestContext:
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""


def request_context(request: Request) -> RequestContext:
    return scope_context(request.scope)


def scope_context(scope: Scope) -> RequestContext:
    """The same from an ASGI scope, for code below the handlers' level (authentication)."""
    client = scope.get("client")
    rid = scope.get("request_id")
    user_agent = ""
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:_MAX_USER_AGENT]
            break
    return RequestContext(
        ip=client[0] if client else "",
        user_agent=user_agent,
        request_id=rid if isinstance(rid, str) else "",
    )
