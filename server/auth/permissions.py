"""Every permission a role can grant; a role naming anything else is refused."""

from __future__ import annotations

KNOWN_PERMISSIONS = frozenset(
    {
        "users:read",
        "users:write",
        "roles:write",
        "audit:read",
        "products:write",
        "orders:read_all",
        "orders:write_all",
        "webhooks:write",
        "apikeys:write",
    }
)
