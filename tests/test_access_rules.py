"""Deny by default: every route declares who may call it, the OpenAPI document says the same,
and the permission routes answer anonymous, customer, staff and admin callers as declared."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute
from starlette.staticfiles import StaticFiles

from server.app import HotpathApp
from server.auth.permissions import KNOWN_PERMISSIONS
from server.routes import build_routes
from server.web.access import (
    ANONYMOUS,
    AUTHENTICATED,
    PUBLIC,
    SESSION,
    Access,
    AccessKind,
    GuardedRoute,
    guarded_route,
    permission,
)
from server.web.apidoc import endpoint_doc
from server.web.docs import ASSETS_DIR
from tests.fixtures.identity import Accounts
from tests.fixtures.recipes import RECIPES, Call, Key

PROBLEM = "urn:hotpath:problem:"

# (method, path) pairs that anyone may call. Adding a public route means adding it here.
PUBLIC_ALLOWLIST = frozenset(
    {
        ("GET", "/livez"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/password/forgot"),
        ("POST", "/v1/auth/password/reset"),
        ("POST", "/v1/auth/email/verify"),
        ("GET", "/"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/v1/products"),
        ("GET", "/v1/products/{product_id}"),
    }
)


# Open to anyone: credentials checked when sent (PUBLIC) or not read at all (ANONYMOUS).
OPEN = (PUBLIC, ANONYMOUS)


def _methods(route: Route) -> list[str]:
    return sorted((route.methods or set()) - {"HEAD"})


def access_violations(routes: Sequence[BaseRoute], prefix: str = "") -> list[str]:
    """Every way a route table breaks deny-by-default, one line each (empty when it is fine)."""
    found: list[str] = []
    for route in routes:
        if isinstance(route, Mount):
            path = prefix + route.path
            if isinstance(route.app, StaticFiles):
                continue  # static assets (the docs page's scripts and styles)
            if isinstance(route.app, Router):
                found.extend(access_violations(route.routes, path))
            else:
                found.append(f"Mount {path} serves {type(route.app).__name__}, not static files")
        elif isinstance(route, GuardedRoute):
            path = prefix + route.path
            methods = _methods(route)
            if not methods:
                found.append(f"{path} declares no methods")
            access = route.access
            if access in OPEN:
                found.extend(
                    f"{method} {path} is open but not in the allowlist"
                    for method in methods
                    if (method, path) not in PUBLIC_ALLOWLIST
                )
            elif access.kind is AccessKind.PERMISSION:
                if access.permission not in KNOWN_PERMISSIONS:
                    found.append(f"{path} needs the unknown permission {access.permission!r}")
            elif access.kind not in (AccessKind.AUTHENTICATED, AccessKind.SESSION):
                found.append(f"{path} has an unknown access kind {access.kind!r}")
        else:
            path = prefix + str(getattr(route, "path", "?"))
            found.append(f"{type(route).__name__} {path} is not a GuardedRoute")
    return found


def _guarded(routes: Sequence[BaseRoute]) -> list[GuardedRoute]:
    return [r for r in routes if isinstance(r, GuardedRoute)]


def _concrete(path: str) -> str:
    """A URL that the route matches; the guard answers before any handler looks at the values."""
    return re.sub(r"\{[^}]+\}", "1", path)


# --- 1. deny by default ---------------------------------------------------------------------


def test_every_route_is_guarded_and_public_only_when_allowed(app: HotpathApp) -> None:
    assert access_violations(app.routes) == []


def test_the_public_allowlist_has_no_stale_entries(app: HotpathApp) -> None:
    public = {
        (method, route.path)
        for route in _guarded(app.routes)
        if route.access in OPEN
        for method in _methods(route)
    }
    assert public == PUBLIC_ALLOWLIST


def test_the_checker_catches_unguarded_and_unlisted_routes() -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    async def raw_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    bad: list[BaseRoute] = [
        Route("/plain", endpoint),
        guarded_route("/v1/secret-but-public", endpoint, ["GET"], PUBLIC),
        guarded_route("/v1/typo", endpoint, ["GET"], permission("users:reed")),
        Mount("/raw", app=raw_app),
        Mount("/nested", routes=[Route("/inner", endpoint)]),
        WebSocketRoute("/ws", endpoint),
        guarded_route("/livez", endpoint, ["GET"], PUBLIC),  # allowed
        guarded_route("/v1/ok", endpoint, ["GET"], AUTHENTICATED),  # allowed
        Mount("/docs/assets", StaticFiles(directory=ASSETS_DIR)),  # allowed
    ]
    found = access_violations(bad)
    assert len(found) == 6, found
    for fragment in ("/plain", "/v1/secret-but-public", "users:reed", "/raw", "/nested/inner"):
        assert any(fragment in line for line in found), (fragment, found)


def test_a_rule_is_declared_whole() -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    def blocking(request: Request) -> Response:
        return Response()

    with pytest.raises(ValueError, match="permission"):
        Access(AccessKind.PERMISSION)
    with pytest.raises(ValueError, match="permission"):
        Access(AccessKind.SESSION, "users:read")
    # check_access runs in front of async endpoints only: there is no second way to serve one.
    with pytest.raises(TypeError, match="async"):
        guarded_route("/v1/blocking", blocking, ["GET"], AUTHENTICATED)  # type: ignore[arg-type]
    assert guarded_route("/v1/ok", endpoint, ["GET"], SESSION) is not None


async def test_anonymous_callers_get_401_on_every_non_public_route(
    app: HotpathApp, http: httpx.AsyncClient
) -> None:
    checked = 0
    for route in _guarded(app.routes):
        if route.access in OPEN:
            continue
        for method in _methods(route):
            response = await http.request(method, _concrete(route.path), json={})
            assert response.status_code == 401, (method, route.path, response.text)
            assert response.json()["type"] == PROBLEM + "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 18  # the identity routes at the time of writing


async def test_openapi_marks_every_protected_operation(
    app: HotpathApp, http: httpx.AsyncClient
) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "security" not in document  # no global requirement: each operation says its own
    problem = {"$ref": "#/components/schemas/Problem"}

    documented = 0
    for route in _guarded(app.routes):
        if not route.include_in_schema:
            assert route.access in OPEN, route.path
            continue
        for method in _methods(route):
            where = f"{method} {route.path}"
            op = document["paths"][route.path][method.lower()]
            documented += 1
            responses = op["responses"]
            if route.access in OPEN:
                assert not op.get("security"), where
                continue
            takes_keys = route.access != SESSION
            expected: list[dict[str, list[str]]] = [{"bearerAuth": []}]
            if takes_keys:
                expected.append({"apiKeyAuth": []})
            assert op.get("security") == expected, where
            assert "401" in responses, where
            content = responses["401"]["content"]["application/problem+json"]
            assert content["schema"] == problem, where
            if route.access.kind is AccessKind.PERMISSION:
                assert "403" in responses, where
                assert f"`{route.access.permission}`" in op.get("description", ""), where
            elif route.access.kind is AccessKind.SESSION:
                assert "403" in responses, where  # an API key is refused
                assert "not an API key" in op.get("description", ""), where
            else:
                # The access rule refuses nothing here; a handler may (another user's orders).
                own = endpoint_doc(getattr(route.endpoint, "__wrapped__", route.endpoint))
                assert own is not None, where
                assert ("403" in responses) == (403 in own.errors), where
    operations = sum(len(ops) for ops in document["paths"].values())
    assert documented == operations


# --- 2. authorization matrix ----------------------------------------------------------------


def _permission_routes() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for route in _guarded(build_routes(lambda: b"{}")):
        if route.access.kind is AccessKind.PERMISSION:
            assert route.access.permission is not None
            rows.extend((m, route.path, route.access.permission) for m in _methods(route))
    return rows


PERMISSION_ROUTES = _permission_routes()

# The staff column, written out: staff holds users:read and audit:read, not users:write or
# roles:write. A new permission route must be added here (test_staff_column_is_explicit).
STAFF_MAY: dict[Key, bool] = {
    ("GET", "/v1/users"): True,
    ("GET", "/v1/users/{user_id}"): True,
    ("PATCH", "/v1/users/{user_id}"): False,
    ("PUT", "/v1/users/{user_id}/roles/{role}"): False,
    ("DELETE", "/v1/users/{user_id}/roles/{role}"): False,
    ("GET", "/v1/roles"): True,
    ("GET", "/v1/roles/{name}"): True,
    ("POST", "/v1/roles"): False,
    ("PATCH", "/v1/roles/{name}"): False,
    ("GET", "/v1/audit-events"): True,
    ("POST", "/v1/products"): True,
    ("PATCH", "/v1/products/{product_id}"): True,
    ("DELETE", "/v1/products/{product_id}"): True,
    ("POST", "/v1/products/{product_id}/stock"): True,
    ("POST", "/v1/orders/{order_id}/fulfil"): True,
    ("POST", "/v1/webhooks"): False,
    ("GET", "/v1/webhooks"): False,
    ("GET", "/v1/webhooks/{endpoint_id}"): False,
    ("PATCH", "/v1/webhooks/{endpoint_id}"): False,
    ("DELETE", "/v1/webhooks/{endpoint_id}"): False,
    ("POST", "/v1/webhooks/{endpoint_id}/rotate-secret"): False,
    ("POST", "/v1/webhooks/{endpoint_id}/ping"): False,
    ("GET", "/v1/webhooks/{endpoint_id}/deliveries"): False,
    ("POST", "/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): False,
}


CALLERS = ("anonymous", "customer", "staff", "admin")


def test_staff_column_is_explicit() -> None:
    assert {(m, p) for m, p, _ in PERMISSION_ROUTES} == set(STAFF_MAY)


async def test_staff_column_matches_the_seeded_staff_role(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    _, admin = await accounts.create_and_login("admin")
    response = await http.get("/v1/roles", headers=admin.headers)
    assert response.status_code == 200, response.text
    staff = next(r for r in response.json()["data"] if r["name"] == "staff")
    derived = {(m, p): needed in staff["permissions"] for m, p, needed in PERMISSION_ROUTES}
    assert derived == STAFF_MAY


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "needed"),
    PERMISSION_ROUTES,
    ids=[f"{m} {p}" for m, p, _ in PERMISSION_ROUTES],
)
async def test_authorization_matrix(
    http: httpx.AsyncClient,
    accounts: Accounts,
    caller: str,
    method: str,
    path: str,
    needed: str,
) -> None:
    key = (method, path)
    if caller == "anonymous":
        expected, headers = 401, {}
    else:
        _, tokens = await accounts.create_and_login(caller)
        headers = tokens.headers
        allowed = caller == "admin" or (caller == "staff" and STAFF_MAY.get(key, False))
        expected = 200 if allowed else 403
    if expected == 200:
        recipe = RECIPES.get(key)
        assert recipe is not None, f"add a request recipe for {method} {path} to RECIPES"
        call = await recipe(accounts)
    else:
        call = Call(_concrete(path), {} if method in ("POST", "PUT", "PATCH") else None)

    response = await http.request(
        method, call.url, json=call.json, headers={**headers, **(call.headers or {})}
    )

    if expected == 200:
        assert 200 <= response.status_code < 300, (caller, key, response.text)
    else:
        assert response.status_code == expected, (caller, key, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        if expected == 401:
            assert body["type"] == PROBLEM + "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        else:
            assert body["type"] == PROBLEM + "forbidden"
            assert needed in body["detail"]
