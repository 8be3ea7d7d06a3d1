"""The whole URL map in one place, each route with who may call it (deny by default)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute, Mount, Route

from server.apikeys import handlers as api_keys
from server.audit import handlers as audit
from server.auth import handlers as auth
from server.catalog import handlers as catalog
from server.health import handlers as health
from server.orders import handlers as orders
from server.roles import handlers as roles
from server.runtime.metrics import metrics_endpoint
from server.users import handlers as users
from server.web.access import ANONYMOUS, AUTHENTICATED, PUBLIC, SESSION, guarded_route, permission
from server.web.docs import docs_routes
from server.webhooks import handlers as webhooks

GET, POST, PATCH, PUT, DELETE = ["GET"], ["POST"], ["PATCH"], ["PUT"], ["DELETE"]
HOOKS = permission("webhooks:write")


def build_routes(openapi_document: Callable[[], bytes]) -> list[BaseRoute]:
    r = guarded_route
    return [
        r("/livez", health.livez, GET, ANONYMOUS),
        r("/readyz", health.readyz, GET, ANONYMOUS),
        # Scrape access is checked inside (a token or a direct loopback client).
        r("/metrics", metrics_endpoint, GET, PUBLIC),
        r("/.well-known/jwks.json", auth.jwks, GET, ANONYMOUS),
        r("/v1/auth/register", auth.register, POST, ANONYMOUS),
        r("/v1/auth/login", auth.login, POST, ANONYMOUS),
        r("/v1/auth/refresh", auth.refresh, POST, ANONYMOUS),
        r("/v1/auth/logout", auth.logout, POST, SESSION),
        r("/v1/auth/logout-all", auth.logout_all, POST, SESSION),
        r("/v1/auth/sessions", auth.list_sessions, GET, SESSION),
        r("/v1/auth/sessions/{session_id}", auth.delete_session, DELETE, SESSION),
        r("/v1/auth/password/forgot", auth.forgot_password, POST, ANONYMOUS),
        r("/v1/auth/password/reset", auth.reset_password, POST, ANONYMOUS),
        r("/v1/auth/password/change", auth.change_password, POST, SESSION),
        r("/v1/auth/email/verify", auth.verify_email, POST, ANONYMOUS),
        r("/v1/auth/email/verify/resend", auth.resend_verification, POST, SESSION),
        r("/v1/users/me", users.get_me, GET, AUTHENTICATED),
        r("/v1/users/me", users.patch_me, PATCH, SESSION),
        r("/v1/users/me", users.delete_me, DELETE, SESSION),
        r("/v1/users", users.list_users, GET, permission("users:read")),
        r("/v1/users/{user_id}", users.get_user, GET, permission("users:read")),
        r("/v1/users/{user_id}", users.patch_user, PATCH, permission("users:write")),
        r("/v1/users/{user_id}/roles/{role}", users.grant_role, PUT, permission("users:write")),
        r("/v1/users/{user_id}/roles/{role}", users.revoke_role, DELETE, permission("users:write")),
        r("/v1/roles", roles.list_roles, GET, permission("users:read")),
        r("/v1/roles", roles.create_role, POST, permission("roles:write")),
        r("/v1/roles/{name}", roles.get_role, GET, permission("users:read")),
        r("/v1/roles/{name}", roles.patch_role, PATCH, permission("roles:write")),
        r("/v1/audit-events", audit.list_audit_events, GET, permission("audit:read")),
        r("/v1/products", catalog.list_products, GET, PUBLIC),
        r("/v1/products", catalog.create_product, POST, permission("products:write")),
        r("/v1/products/{product_id}", catalog.get_product, GET, PUBLIC),
        r("/v1/products/{product_id}", catalog.patch_product, PATCH, permission("products:write")),
        r(
            "/v1/products/{product_id}",
            catalog.delete_product,
            DELETE,
            permission("products:write"),
        ),
        r(
            "/v1/products/{product_id}/stock",
            catalog.change_stock,
            POST,
            permission("products:write"),
        ),
        r("/v1/orders", orders.place_order, POST, AUTHENTICATED),
        r("/v1/orders", orders.list_orders, GET, AUTHENTICATED),
        r("/v1/orders/{order_id}", orders.get_order, GET, AUTHENTICATED),
        r("/v1/orders/{order_id}/cancel", orders.cancel_order, POST, AUTHENTICATED),
        r(
            "/v1/orders/{order_id}/fulfil",
            orders.fulfil_order,
            POST,
            permission("orders:write_all"),
        ),
        # Keys are managed from a signed-in session, never with a key.
        r("/v1/api-keys", api_keys.create_key, POST, SESSION),
        r("/v1/api-keys", api_keys.list_keys, GET, SESSION),
        r("/v1/api-keys/{key_id}", api_keys.get_key, GET, SESSION),
        r("/v1/api-keys/{key_id}", api_keys.revoke_key, DELETE, SESSION),
        r("/v1/api-keys/{key_id}/rotate", api_keys.rotate_key, POST, SESSION),
        r("/v1/webhooks", webhooks.create_endpoint, POST, HOOKS),
        r("/v1/webhooks", webhooks.list_endpoints, GET, HOOKS),
        r("/v1/webhooks/{endpoint_id}", webhooks.get_endpoint, GET, HOOKS),
        r("/v1/webhooks/{endpoint_id}", webhooks.patch_endpoint, PATCH, HOOKS),
        r("/v1/webhooks/{endpoint_id}", webhooks.delete_endpoint, DELETE, HOOKS),
        r("/v1/webhooks/{endpoint_id}/rotate-secret", webhooks.rotate_secret, POST, HOOKS),
        r("/v1/webhooks/{endpoint_id}/ping", webhooks.ping_endpoint, POST, HOOKS),
        r("/v1/webhooks/{endpoint_id}/deliveries", webhooks.list_deliveries, GET, HOOKS),
        r(
            "/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
            webhooks.redeliver,
            POST,
            HOOKS,
        ),
        *[_public(route) for route in docs_routes(openapi_document)],
    ]


def _public(route: BaseRoute) -> BaseRoute:
    """The docs page, its assets and the OpenAPI document are open by design."""
    if isinstance(route, Route) and route.methods:
        methods = sorted(route.methods - {"HEAD"})
        return guarded_route(
            route.path,
            route.endpoint,
            methods,
            ANONYMOUS,
            name=route.name,
            include_in_schema=route.include_in_schema,
        )
    assert isinstance(route, Mount)
    return route
