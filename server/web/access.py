"""Who may call a route, declared next to its path in routes.py; deny by default.

``guarded_route(path, endpoint, methods, access)`` is the only way routes.py builds an endpoint
route: the access rule wraps the handler, and the OpenAPI document learns it from the same rule.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from server.auth.principal import Principal
from server.web.apidoc import API_ATTR, EndpointDoc
from server.web.errors import Forbidden, Unauthorized

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Access:
    kind: str  # "anonymous", "public", "authenticated", "session" or "permission"
    permission: str | None = None


# Open to anyone; credentials that are sent must verify (401 otherwise).
PUBLIC = Access("public")
# Open to anyone, and credentials are not read at all: sign-in endpoints and probes, where a
# stale token a client attaches to every request must not make its refresh (or a probe) fail.
ANONYMOUS = Access("anonymous")
AUTHENTICATED = Access("authenticated")
# A person's login, not an API key: managing sessions, passwords and keys themselves.
SESSION = Access("session")


def permission(name: str) -> Access:
    return Access("permission", name)


def principal_of(request: Request) -> Principal:
    """The caller of a guarded route (the guard already refused anonymous requests)."""
    principal = request.scope.get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("Authentication required.", headers={"www-authenticate": "Bearer"})
    return principal


def _check(access: Access, request: Request) -> None:
    if access.kind in _OPEN:
        return
    principal = principal_of(request)
    if access.kind == "session" and principal.session_id is None:
        raise Forbidden("This needs a signed-in user; API keys cannot do it.")
    if access.permission is not None and not principal.can(access.permission):
        raise Forbidden(f"This needs the {access.permission} permission.")


_OPEN = frozenset(("anonymous", "public"))


def anonymous_paths(routes: list[BaseRoute]) -> frozenset[str]:
    """The paths whose routes do not read credentials (for the authentication layer)."""
    return frozenset(
        route.path
        for route in routes
        if isinstance(route, GuardedRoute) and route.access.kind == "anonymous"
    )


def _guard(endpoint: Endpoint, access: Access) -> Endpoint:
    if access.kind == "anonymous":
        return endpoint
    if access.kind == "public":
        return _documented(endpoint, lambda doc: dataclasses.replace(doc, errors=_with(doc, 401)))

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        _check(access, request)
        return await endpoint(request)

    doc: EndpointDoc | None = getattr(endpoint, API_ATTR, None)
    if doc is not None:
        errors = {*doc.errors, 401} | ({403} if access.kind != "authenticated" else set())
        note = {
            "permission": f"Requires the `{access.permission}` permission.",
            "session": "Requires a signed-in user (not an API key).",
        }.get(access.kind, "")
        description = " ".join(part for part in (doc.description, note) if part)
        setattr(
            guarded,
            API_ATTR,
            dataclasses.replace(
                doc,
                auth=True,
                api_keys=access.kind != "session",
                errors=tuple(sorted(errors)),
                description=description,
            ),
        )
    return guarded


def _with(doc: EndpointDoc, status: int) -> tuple[int, ...]:
    return tuple(sorted({*doc.errors, status}))


def _documented(endpoint: Endpoint, change: Callable[[EndpointDoc], EndpointDoc]) -> Endpoint:
    """The endpoint under a changed OpenAPI description. Only the document sees the wrapper:
    GuardedRoute serves a coroutine endpoint through _EndpointApp, which calls the original."""
    doc: EndpointDoc | None = getattr(endpoint, API_ATTR, None)
    if doc is None:
        return endpoint

    @functools.wraps(endpoint)
    async def described(request: Request) -> Response:
        return await endpoint(request)

    setattr(described, API_ATTR, change(doc))
    return described


class GuardedRoute(Route):
    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: list[str],
        access: Access,
        name: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        super().__init__(
            path,
            _guard(endpoint, access),
            methods=methods,
            name=name,
            include_in_schema=include_in_schema,
        )
        self.access = access
        if inspect.iscoroutinefunction(endpoint):
            self.app = _EndpointApp(endpoint, access)


class _EndpointApp:
    """What serves a guarded route: Starlette's request_response, less its per-route exception
    wrapper and closures, with the guard inline. An exception goes up to ExceptionMiddleware,
    which runs the same handlers on the same request, so the answer is the same; each layer
    less is a frame fewer for every await below it to resume through."""

    __slots__ = ("access", "endpoint")

    def __init__(self, endpoint: Endpoint, access: Access) -> None:
        self.endpoint = endpoint
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        _check(self.access, request)
        response = await self.endpoint(request)
        await response(scope, receive, send)


def guarded_route(
    path: str, endpoint: Endpoint, methods: list[str], access: Access, **options: Any
) -> Route:
    """The positional form routes.py uses; ``options`` are GuardedRoute's (name, schema flag)."""
    return GuardedRoute(path, endpoint, methods=methods, access=access, **options)
