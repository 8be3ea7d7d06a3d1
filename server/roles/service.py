"""Roles and their permissions (the admin's view)."""

from __future__ import annotations

from server.audit.repository import AuditRepository
from server.auth.permissions import KNOWN_PERMISSIONS
from server.auth.principal import Principal
from server.auth.revocation import Revocation
from server.auth.revoker import Revoker
from server.context import RequestContext
from server.db import Connection, Database
from server.errors import NotFound, ValidationFailed
from server.roles.repository import Role, RolesRepository


def _check(permissions: list[str]) -> None:
    unknown = sorted(set(permissions) - KNOWN_PERMISSIONS)
    if unknown:
        raise ValidationFailed(
            "Unknown permissions.",
            errors=[{"pointer": "/permissions", "detail": f"unknown: {', '.join(unknown)}"}],
        )


class RolesService:
    def __init__(
        self, db: Database, *, roles: RolesRepository, audit: AuditRepository, revoker: Revoker
    ) -> None:
        self.db = db
        self.roles = roles
        self.audit = audit
        self.revoker = revoker

    async def all(self) -> list[Role]:
        async with self.db.connection() as conn:
            return await self.roles.all(conn)

    async def create(
        self,
        actor: Principal,
        name: str,
        description: str,
        permissions: list[str],
        ctx: RequestContext,
    ) -> Role:
        _check(permissions)
        async with self.db.transaction() as conn:
            role = await self.roles.create(conn, name, description, permissions)
            await self._record(conn, "role.created", actor, role, ctx)
            return role

    async def update(
        self,
        actor: Principal,
        name: str,
        permissions: list[str],
        description: str | None,
        ctx: RequestContext,
    ) -> Role:
        _check(permissions)
        revoked: list[Revocation] = []
        async with self.db.transaction() as conn:
            before = await self.roles.get(conn, name, for_update=True)
            if before is None:
                raise NotFound(f"No role named {name!r}.")
            role = await self.roles.set_permissions(conn, name, permissions, description)
            assert role is not None  # locked above
            if set(before.permissions) - set(role.permissions):
                # Tokens and cached API keys carry permissions: none may keep a lost one.
                revoked = await self.revoker.cut_off_role_holders(conn, name)
            await self._record(conn, "role.updated", actor, role, ctx)
        await self.revoker.announce(revoked)
        return role

    async def _record(
        self, conn: Connection, action: str, actor: Principal, role: Role, ctx: RequestContext
    ) -> None:
        await self.audit.record(
            conn,
            ctx,
            action,
            actor_id=actor.user_id,
            target_type="role",
            target_id=role.name,
            details={"permissions": list(role.permissions)},
        )
