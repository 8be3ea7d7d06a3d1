"""Who may call a route, declared next to its path in routes.py; deny by default.

``guarded_route(path, endpoint, methods, access)`` is the only way routes.py builds an endpoint
route: ``check_access`` runs before the handler, and the OpenAPI document learns the same rule.
The endpoint is a Starlette one (``async def handler(request) -> Response``) or an ASGI
endpoint (server/web/asgi_endpoint.py), checked on the scope.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from server.auth.principal import Principal
from server.web.apidoc import API_ATTR, EndpointDoc
from server.web.asgi_endpoint import AsgiEndpoint, is_asgi_endpoint
from server.web.errors import Forbidden, Unauthorized

Endpoint = Callable[[Request], Awaitable[Response]]


class AccessKind(enum.Enum):
    # Open to anyone, and credentials are not read at all: sign-in endpoints and probes, where a
    # stale token a client attaches to every request must not make its refresh (or a probe) fail.
    ANONYMOUS = "anonymous"
    # Open to anyone; credentials that are sent must verify (401 otherwise).
    PUBLIC = "public"
    # A signed-in user or an API key.
    AUTHENTICATED = "authenticated"
    # A person's login, not an API key: managing sessions, passwords and keys themselves.
    SESSION = "session"
    # A principal holding Access.permission.
    PERMISSION = "permission"


_OPEN = frozenset((AccessKind.ANONYMOUS, AccessKind.PUBLIC))


@dataclass(frozen=True, slots=True)
class Access:
    kind: AccessKind
    permission: str | None = None
    # What check_access reads on every request, worked out once: plain attributes, where an
    # Enum member lookup or hash would cost more than the rest of the check.
    open: bool = field(init=False, repr=False, compare=False)
    session_only: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.kind is AccessKind.PERMISSION) != (self.permission is not None):
            raise ValueError("a permission, and only a permission rule, names a permission")
        object.__setattr__(self, "open", self.kind in _OPEN)
        object.__setattr__(self, "session_only", self.kind is AccessKind.SESSION)


PUBLIC = Access(AccessKind.PUBLIC)
ANONYMOUS = Access(AccessKind.ANONYMOUS)
AUTHENTICATED = Access(AccessKind.AUTHENTICATED)
SESSION = Access(AccessKind.SESSION)


def permission(name: str) -> Access:
    return Access(AccessKind.PERMISSION, name)


def principal_of(request: Request) -> Principal:
    """The caller of a guarded route (the guard already refused anonymous requests)."""
    return scope_principal(request.scope)


def scope_principal(scope: Scope) -> Principal:
    """``principal_of`` from the scope, for an ASGI endpoint."""
    principal = scope.get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("Authentication required.", headers={"www-authenticate": "Bearer"})
    return principal


def check_access(access: Access, request: Request) -> None:
    """The access rule for ``request``: see ``check_scope_access``."""
    check_scope_access(access, request.scope)


def check_scope_access(access: Access, scope: Scope) -> None:
    """The access rule, the one place it is enforced: 401 or 403, or return to call the route."""
    if access.open:
        return
    principal = scope_principal(scope)
    if access.session_only and principal.session_id is None:
        raise Forbidden("This needs a signed-in user; API keys cannot do it.")
    if access.permission is not None and not principal.can(access.permission):
        raise Forbidden(f"This needs the {access.permission} permission.")


def anonymous_paths(routes: list[BaseRoute]) -> frozenset[str]:
    """The paths whose routes do not read credentials (for the authentication layer)."""
    return frozenset(
        route.path
        for route in routes
        if isinstance(route, GuardedRoute) and route.access.kind is AccessKind.ANONYMOUS
    )


def _documented(doc: EndpointDoc, access: Access) -> EndpointDoc:
    """What the OpenAPI document says of a route under this rule (what check_access refuses)."""
    kind = access.kind
    if kind is AccessKind.ANONYMOUS:
        return doc
    if kind is AccessKind.PUBLIC:
        return dataclasses.replace(doc, errors=tuple(sorted({*doc.errors, 401})))
    refused = {401} if kind is AccessKind.AUTHENTICATED else {401, 403}
    note = {
        AccessKind.PERMISSION: f"Requires the `{access.permission}` permission.",
        AccessKind.SESSION: "Requires a signed-in user (not an API key).",
    }.get(kind, "")
    return dataclasses.replace(
        doc,
        auth=True,
        api_keys=kind is not AccessKind.SESSION,
        errors=tuple(sorted({*doc.errors, *refused})),
        description=" ".join(part for part in (doc.description, note) if part),
    )


def _described(endpoint: Endpoint | AsgiEndpoint, access: Access) -> Endpoint | AsgiEndpoint:
    """The endpoint as the OpenAPI document sees it (``route.endpoint``); it is never served:
    GuardedRoute serves the original behind the access check, whichever kind it is."""
    doc: EndpointDoc | None = getattr(endpoint, API_ATTR, None)
    if doc is None or access.kind is AccessKind.ANONYMOUS:
        return endpoint

    @functools.wraps(endpoint)
    async def described(*args: Any) -> Any:
        return await endpoint(*args)

    setattr(described, API_ATTR, _documented(doc, access))
    return described


class GuardedRoute(Route):
    def __init__(
        self,
        path: str,
        endpoint: Endpoint | AsgiEndpoint,
        *,
        methods: list[str],
        access: Access,
        name: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        if not inspect.iscoroutinefunction(cast(object, endpoint)):  # either kind, not narrowed
            raise TypeError(f"{path}: a guarded route serves an async endpoint")
        super().__init__(
            path,
            _described(endpoint, access),
            methods=methods,
            name=name,
            include_in_schema=include_in_schema,
        )
        self.access = access
        if is_asgi_endpoint(endpoint):
            asgi = cast(AsgiEndpoint, endpoint)
            # An open route has nothing to check: the router calls the handler itself.
            self.app = asgi if access.open else _GuardedAsgi(asgi, access)
        else:
            self.app = _EndpointApp(cast(Endpoint, endpoint), access)


class _EndpointApp:
    """What serves a guarded route: Starlette's request_response, less its per-route exception
    wrapper and closures, with the guard inline. An exception goes up to the error boundary,
    which runs the same handlers on the same request, so the answer is the same; each layer
    less is a frame fewer for every await below it to resume through."""

    __slots__ = ("access", "endpoint")

    def __init__(self, endpoint: Endpoint, access: Access) -> None:
        self.endpoint = endpoint
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check_scope_access(self.access, scope)
        response = await self.endpoint(Request(scope, receive, send))
        if response.background is None and type(response).__call__ is _RESPONSE_CALL:
            # What Response.__call__ sends for an HTTP request, without its coroutine: a frame
            # fewer for both sends to go through. Streaming and file responses, and any with a
            # background task, are called as they are.
            await send(_start(response.status_code, response.raw_headers))
            await send({"type": "http.response.body", "body": response.body})
        else:
            await response(scope, receive, send)


_RESPONSE_CALL = Response.__call__


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers}


class _GuardedAsgi:
    """What serves an ASGI endpoint on a guarded route: the access check on the scope, then
    the handler's own awaitable (not a coroutine of its own: a frame fewer)."""

    __slots__ = ("access", "endpoint")

    def __init__(self, endpoint: AsgiEndpoint, access: Access) -> None:
        self.endpoint = endpoint
        self.access = access

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        check_scope_access(self.access, scope)
        return self.endpoint(scope, receive, send)


def guarded_route(
    path: str,
    endpoint: Endpoint | AsgiEndpoint,
    methods: list[str],
    access: Access,
    **options: Any,
) -> Route:
    """The positional form routes.py uses; ``options`` are GuardedRoute's (name, schema flag)."""
    return GuardedRoute(path, endpoint, methods=methods, access=access, **options)
