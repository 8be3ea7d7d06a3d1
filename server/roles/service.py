"""Roles and their permissions (the admin's view)."""

from __future__ import annotations

from collections.abc import Iterable

from server.audit.repository import AuditRepository
from server.auth.permissions import KNOWN_PERMISSIONS
from server.auth.principal import Principal
from server.auth.revocation import Revocation
from server.auth.revoker import Revoker
from server.db.database import Connection, Database
from server.roles.repository import Role, RolesRepository
from server.web.context import RequestContext
from server.web.errors import Conflict, Forbidden, NotFound, ValidationFailed

# create-admin grants this role and nothing else: it must keep every permission it holds, or
# the administrators (all of them at once) lose what they need to put it back.
ADMIN_ROLE = "admin"


class RoleProtected(Conflict):
    slug = "role-protected"
    title = "This built-in role cannot lose permissions"


def check_no_escalation(actor: Principal, permissions: Iterable[str]) -> None:
    """Handing out or taking away permissions, by a role grant or by a role's definition, needs
    every one of them: users:write or roles:write alone must not be a way to make anyone,
    oneself included, an administrator, nor to strip roles more powerful than the caller."""
    missing = sorted(set(permissions) - actor.permissions)
    if missing:
        raise Forbidden(f"Managing this role needs the permissions you lack: {', '.join(missing)}.")


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

    async def get(self, name: str) -> Role:
        async with self.db.connection() as conn:
            role = await self.roles.get(conn, name)
        if role is None:
            raise NotFound("No such role.")
        return role

    async def create(
        self,
        actor: Principal,
        name: str,
        description: str,
        permissions: list[str],
        ctx: RequestContext,
    ) -> Role:
        """A new role may hold only permissions the caller holds itself."""
        _check(permissions)
        check_no_escalation(actor, permissions)
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
        """Set a role's permissions (and description).

        The caller must hold every permission the role has before the change and every one it
        has after it, the rule for granting and revoking a role: nothing handed out exceeds the
        caller's own (so widening a role the caller holds cannot widen the caller), and nobody
        strips a role stronger than themselves. A caller holding every permission may make any
        change except drop a permission from the admin role (RoleProtected; nothing is written).
        """
        _check(permissions)
        revoked: list[Revocation] = []
        async with self.db.transaction() as conn:
            before = await self.roles.get(conn, name, for_update=True)
            if before is None:
                raise NotFound(f"No role named {name!r}.")
            check_no_escalation(actor, {*before.permissions, *permissions})
            lost = sorted(set(before.permissions) - set(permissions))
            if name == ADMIN_ROLE and lost:
                raise RoleProtected(
                    f"The {ADMIN_ROLE} role keeps every permission it holds; "
                    f"this change would drop: {', '.join(lost)}."
                )
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
