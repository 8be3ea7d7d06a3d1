"""API keys: create, list, read, revoke, rotate. Owners manage their own; holders of
``apikeys:write`` may list and revoke anyone's. A foreign key is a 404."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.apikeys import format as key_format
from server.apikeys.repository import ApiKey, ApiKeysRepository
from server.apikeys.verifier import secret_digest
from server.audit.repository import AuditRepository
from server.auth.principal import Principal
from server.auth.revoker import Revoker
from server.db.database import Connection, Database
from server.web.context import RequestContext
from server.web.errors import Forbidden, NotFound, ValidationFailed

ADMIN_PERMISSION = "apikeys:write"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str


class ApiKeysService:
    def __init__(
        self,
        db: Database,
        *,
        keys: ApiKeysRepository,
        audit: AuditRepository,
        revoker: Revoker,
        rotation_grace: dt.timedelta,
    ) -> None:
        self.db = db
        self.keys = keys
        self.audit = audit
        self.revoker = revoker
        self.rotation_grace = rotation_grace

    async def create(
        self,
        owner: Principal,
        *,
        name: str,
        scopes: list[str],
        expires_at: dt.datetime | None,
        rate_tier: str,
        ctx: RequestContext,
    ) -> IssuedKey:
        beyond = sorted(set(scopes) - owner.permissions)
        if beyond:
            raise ValidationFailed(
                "A key cannot hold permissions its owner does not have.",
                errors=[{"pointer": "/scopes", "detail": f"not yours: {', '.join(beyond)}"}],
            )
        if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
            raise ValidationFailed(
                "The key would be expired already.",
                errors=[{"pointer": "/expires_at", "detail": "must be in the future"}],
            )
        if rate_tier != "standard" and not owner.can(ADMIN_PERMISSION):
            raise Forbidden(f"Only holders of {ADMIN_PERMISSION} may choose a rate tier.")
        key_id = key_format.new_key_id()
        secret = key_format.new_key(key_id)
        async with self.db.transaction() as conn:
            key = await self.keys.create(
                conn,
                key_id=key_id,
                user_id=owner.user_id,
                name=name,
                scopes=sorted(set(scopes)),
                rate_tier=rate_tier,
                secret_hash=secret_digest(secret),
                expires_at=expires_at,
            )
            await self._record(conn, "apikey.created", owner, key, ctx)
        return IssuedKey(key, secret)

    async def page(
        self,
        viewer: Principal,
        *,
        owner: int | None,
        every_owner: bool,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[ApiKey]:
        if (every_owner or (owner is not None and owner != viewer.user_id)) and not viewer.can(
            ADMIN_PERMISSION
        ):
            raise Forbidden(f"Listing other people's keys needs {ADMIN_PERMISSION}.")
        whose = None if every_owner else (owner if owner is not None else viewer.user_id)
        async with self.db.connection() as conn:
            return await self.keys.page(conn, owner=whose, after=after, limit=limit)

    async def get(self, viewer: Principal, key_id: str) -> ApiKey:
        async with self.db.connection() as conn:
            return await self._visible(conn, viewer, key_id, admin_may=True)

    async def revoke(self, viewer: Principal, key_id: str, ctx: RequestContext) -> None:
        async with self.db.transaction() as conn:
            key = await self._visible(conn, viewer, key_id, admin_may=True)
            if not await self.keys.revoke(conn, key.id):
                return  # revoked already: DELETE is idempotent
            revoked = await self.revoker.end_key(conn, key.id)
            await self._record(conn, "apikey.revoked", viewer, key, ctx)
        await self.revoker.announce(revoked)

    async def rotate(self, owner: Principal, key_id: str, ctx: RequestContext) -> IssuedKey:
        async with self.db.transaction() as conn:
            key = await self._visible(conn, owner, key_id, admin_may=False)
            expired = key.expires_at is not None and key.expires_at <= dt.datetime.now(dt.UTC)
            if key.revoked_at is not None or expired:
                raise NotFound("No such API key.")
            # From the stored id, not the path's: any text can reach here, a key id cannot.
            secret = key_format.new_key(key.id)
            grace_end = dt.datetime.now(dt.UTC) + self.rotation_grace
            rotated = await self.keys.rotate(conn, key.id, secret_digest(secret), grace_end)
            if rotated is None:
                raise NotFound("No such API key.")
            await self._record(conn, "apikey.rotated", owner, rotated, ctx)
            recheck = await self.revoker.recheck_key(conn, key.id)
        await self.revoker.announce(recheck)
        return IssuedKey(rotated, secret)

    async def _visible(
        self, conn: Connection, viewer: Principal, key_id: str, *, admin_may: bool
    ) -> ApiKey:
        key = await self.keys.get(conn, key_id)
        mine = key is not None and key.user_id == viewer.user_id
        if key is None or not (mine or (admin_may and viewer.can(ADMIN_PERMISSION))):
            raise NotFound("No such API key.")
        return key

    async def _record(
        self, conn: Connection, action: str, actor: Principal, key: ApiKey, ctx: RequestContext
    ) -> None:
        await self.audit.record(
            conn,
            ctx,
            action,
            actor_id=actor.user_id,
            target_type="apikey",
            target_id=key.id,
            details={"owner_id": key.user_id, "scopes": list(key.scopes)},
        )
