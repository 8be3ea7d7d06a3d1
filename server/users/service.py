"""Administration of other people's accounts: listing, status, roles."""

from __future__ import annotations

import datetime as dt

from server.audit.repository import AuditRepository
from server.auth.principal import Principal
from server.auth.revocation import Revocation
from server.auth.revoker import Revoker
from server.db.database import Connection, Database
from server.roles.repository import RolesRepository
from server.roles.service import ADMIN_ROLE, check_no_escalation
from server.users.repository import User, UserFilter, UsersRepository
from server.web.context import RequestContext
from server.web.errors import Conflict, NotFound


class CannotChangeSelf(Conflict):
    slug = "cannot-change-self"
    title = "Administrators cannot disable or demote themselves"


class UsersAdminService:
    def __init__(
        self,
        db: Database,
        *,
        users: UsersRepository,
        roles: RolesRepository,
        audit: AuditRepository,
        revoker: Revoker,
    ) -> None:
        self.db = db
        self.users = users
        self.roles = roles
        self.audit = audit
        self.revoker = revoker

    async def page(
        self, *, after: tuple[dt.datetime, int] | None, where: UserFilter, limit: int
    ) -> list[User]:
        async with self.db.connection() as conn:
            return await self.users.page(conn, after=after, where=where, limit=limit)

    async def get(self, user_id: int) -> User:
        async with self.db.connection() as conn:
            return await self._user(conn, user_id)

    async def update(
        self,
        actor: Principal,
        user_id: int,
        *,
        display_name: str | None,
        status: str | None,
        ctx: RequestContext,
    ) -> User:
        revoked: list[Revocation] = []
        async with self.db.transaction() as conn:
            user = await self._user(conn, user_id)
            if display_name is not None and display_name != user.display_name:
                user = await self.users.update_profile(conn, user_id, display_name)
            if status is not None and status != user.status:
                if user_id == actor.user_id:
                    raise CannotChangeSelf("You cannot change your own status.")
                changed = await self.users.set_status(conn, user_id, status)
                assert changed is not None
                user = changed
                if status != "active":
                    # Disabling ends every session at once, on every replica.
                    revoked = await self.revoker.end_all_sessions(conn, user_id, "disabled")
                await self._record(
                    conn, "user.status_changed", actor, user_id, ctx, {"status": status}
                )
        await self.revoker.announce(revoked)
        return user

    async def grant(self, actor: Principal, user_id: int, role: str, ctx: RequestContext) -> User:
        async with self.db.transaction() as conn:
            found = await self.roles.get(conn, role)
            if found is None:
                raise NotFound(f"No role named {role!r}.")
            check_no_escalation(actor, found.permissions)
            user = await self._user(conn, user_id)
            changed = await self.users.add_role(conn, user_id, role)
            if changed is None:
                return user
            await self._record(conn, "user.role_granted", actor, user_id, ctx, {"role": role})
            return changed

    async def revoke(self, actor: Principal, user_id: int, role: str, ctx: RequestContext) -> User:
        revoked: list[Revocation] = []
        async with self.db.transaction() as conn:
            user = await self._user(conn, user_id)
            if user_id == actor.user_id and role == ADMIN_ROLE:
                raise CannotChangeSelf("You cannot remove your own admin role.")
            found = await self.roles.get(conn, role)
            if found is not None:
                check_no_escalation(actor, found.permissions)
            changed = await self.users.remove_role(conn, user_id, role)
            if changed is None:
                return user
            # Tokens carry permissions: end the sessions so the next refresh reflects the loss.
            revoked = await self.revoker.end_all_sessions(conn, user_id, "role_revoked")
            await self._record(conn, "user.role_revoked", actor, user_id, ctx, {"role": role})
        await self.revoker.announce(revoked)
        return changed

    async def _user(self, conn: Connection, user_id: int) -> User:
        user = await self.users.get(conn, user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    async def _record(
        self,
        conn: Connection,
        action: str,
        actor: Principal,
        user_id: int,
        ctx: RequestContext,
        details: dict[str, object],
    ) -> None:
        await self.audit.record(
            conn,
            ctx,
            action,
            actor_id=actor.user_id,
            target_type="user",
            target_id=str(user_id),
            details=details,
        )
