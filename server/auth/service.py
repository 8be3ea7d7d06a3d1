"""Logins, refresh-token rotation, logout and session management."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass

from server.audit.repository import AuditRepository
from server.auth import refresh_tokens
from server.auth.device_tokens import DeviceTokens
from server.auth.passwords import PasswordHasher
from server.auth.principal import Principal
from server.auth.refresh_tokens import SuccessorSeal
from server.auth.repository import Session, SessionsRepository
from server.auth.revocation import Revocation
from server.auth.revoker import Revoker
from server.auth.throttle import (
    ACCOUNT_POLICY,
    ADDRESS_POLICY,
    DEVICE_POLICY,
    LoginThrottle,
    account_key,
    address_key,
)
from server.auth.tokens import AccessTokenCodec
from server.db.database import Connection, Database
from server.db.write_marks import acting_for
from server.roles.repository import RolesRepository
from server.users.email_address import account_email
from server.users.repository import User, UsersRepository
from server.web.context import RequestContext
from server.web.errors import Forbidden, NotFound, Unauthorized


class InvalidCredentials(Unauthorized):
    slug = "invalid-credentials"
    title = "Invalid email or password"


class EmailNotConfirmed(Forbidden):
    """The password is right, but the account's mailbox has not confirmed it yet."""

    slug = "email-not-confirmed"
    title = "Email address not confirmed"


class InvalidRefreshToken(Unauthorized):
    slug = "invalid-refresh-token"
    title = "Invalid refresh token"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: uuid.UUID
    device_token: str | None = None  # logins only: this client is a known device from now on


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    grace: dt.timedelta
    idle: dt.timedelta
    lifetime: dt.timedelta


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthService:
    def __init__(
        self,
        db: Database,
        *,
        users: UsersRepository,
        roles: RolesRepository,
        sessions: SessionsRepository,
        throttle: LoginThrottle,
        audit: AuditRepository,
        revoker: Revoker,
        passwords: PasswordHasher,
        codec: AccessTokenCodec,
        seal: SuccessorSeal,
        policy: SessionPolicy,
        devices: DeviceTokens,
    ) -> None:
        self.db = db
        self.devices = devices
        self.users = users
        self.roles = roles
        self.sessions = sessions
        self.throttle = throttle
        self.audit = audit
        self.revoker = revoker
        self.passwords = passwords
        self.codec = codec
        self.seal = seal
        self.policy = policy

    async def login(
        self, email: str, password: str, ctx: RequestContext, device_token: str | None = None
    ) -> TokenPair:
        email = account_email(email)
        account, address = account_key(email), address_key(ctx.ip)
        async with self.db.connection() as conn:
            credentials = await self.users.credentials(conn, email)
        stamp = credentials.password_hash if credentials is not None else ""
        # A device that logged in to this account before (with its password as it is now) is
        # counted on its own: strangers' failures, which block the account, do not hold it up.
        device = self.devices.device_key(device_token, account, stamp)
        first = (device, DEVICE_POLICY) if device else (account, ACCOUNT_POLICY)
        async with self.db.transaction() as conn:
            # Committed before the password is checked: it is what throttles a burst.
            await self.throttle.attempt(conn, [first, (address, ADDRESS_POLICY)], _now())
        if credentials is None:
            await self.passwords.verify_dummy(password)
            await self._login_failed(None, ctx, "unknown_email")
            raise InvalidCredentials("The email or password is wrong.")
        verdict = await self.passwords.verify(credentials.password_hash, password)
        user = credentials.user
        if not verdict.ok or user.status != "active":
            reason = "wrong_password" if not verdict.ok else f"status_{user.status}"
            await self._login_failed(user.id, ctx, reason)
            if verdict.ok and user.status == "pending":
                # Only someone with the password learns it: it is their own registration.
                raise EmailNotConfirmed(
                    "Confirm your email address with the link mailed to it, then log in."
                )
            raise InvalidCredentials("The email or password is wrong.")
        new_hash = await self.passwords.hash(password) if verdict.needs_rehash else None
        acting_for(user.id)  # the sign-in is this user's write: their next reads show it
        async with self.db.transaction() as conn:
            if new_hash is not None:
                await self.users.rehash(conn, user.id, new_hash)
            await self.throttle.succeeded(conn, first[0], address)
            pair = await self._start_session(conn, user, ctx)
            await self._record(conn, "auth.login", "success", ctx, user.id, user.id)
        if device and new_hash is None:
            known = device_token
        else:
            known = self.devices.issue(account, new_hash or credentials.password_hash)
        return dataclasses.replace(pair, device_token=known)

    async def _login_failed(self, user_id: int | None, ctx: RequestContext, reason: str) -> None:
        async with self.db.transaction() as conn:
            await self._record(
                conn, "auth.login", "failure", ctx, None, user_id, {"reason": reason}
            )

    async def housekeeping(self) -> None:
        """Wipe sealed successors past the grace window and forgotten throttle counters."""
        async with self.db.connection() as conn:
            await self.sessions.clear_old_successors(conn, self.policy.grace.total_seconds())
            await self.throttle.forget_stale(conn)

    async def _start_session(self, conn: Connection, user: User, ctx: RequestContext) -> TokenPair:
        now = _now()
        session = await self.sessions.create(
            conn,
            user_id=user.id,
            idle_expires_at=now + self.policy.idle,
            expires_at=now + self.policy.lifetime,
            user_agent=ctx.user_agent,
            ip=ctx.ip,
        )
        token = refresh_tokens.new_token()
        await self.sessions.add_token(conn, refresh_tokens.digest(token), session.id, 1)
        return await self._pair(conn, user, session.id, token)

    async def _pair(
        self, conn: Connection, user: User, session_id: uuid.UUID, refresh: str
    ) -> TokenPair:
        permissions = await self.roles.permissions(conn, user.roles)
        access, claims = self.codec.issue(
            sub=str(user.id), sid=str(session_id), roles=user.roles, permissions=permissions
        )
        return TokenPair(access, claims.exp - claims.iat, refresh, session_id)

    async def refresh(self, token: str, ctx: RequestContext) -> TokenPair:
        hashed = refresh_tokens.digest(token)
        revoked: list[Revocation] = []
        async with self.db.transaction() as conn:
            found = await self.sessions.token(conn, hashed)
            if found is None:
                raise InvalidRefreshToken("The refresh token is not valid.")
            # Lock the family: concurrent refreshes of one token queue here, then see its state.
            session = await self.sessions.lock(conn, found.session_id)
            current = await self.sessions.token(conn, hashed)
            now = _now()
            user = await self.users.get(conn, session.user_id) if session else None
            if session is None or current is None or user is None or not session.live(now):
                raise InvalidRefreshToken("The session has ended.")
            if user.status != "active":
                raise InvalidRefreshToken("The session has ended.")
            if current.rotated_at is None:
                successor = refresh_tokens.new_token()
                successor_hash = refresh_tokens.digest(successor)
                await self.sessions.add_token(
                    conn, successor_hash, session.id, current.generation + 1
                )
                await self.sessions.mark_rotated(conn, hashed, self.seal.seal(successor, hashed))
                await self.sessions.touch(conn, session.id, now + self.policy.idle)
                return await self._pair(conn, user, session.id, successor)
            replay = await self._grace_successor(
                conn, hashed, current.successor_sealed, now, current.rotated_at
            )
            if replay is not None:
                return await self._pair(conn, user, session.id, replay)
            # A replaced token came back outside the grace window: assume it was stolen.
            revoked = await self.revoker.end_session(conn, session.id, "refresh_reuse")
            await self._record(
                conn,
                "auth.refresh_reuse",
                "denied",
                ctx,
                user.id,
                user.id,
                {"session_id": str(session.id), "generation": current.generation},
                target_type="session",
                target_id=str(session.id),
            )
        await self.revoker.announce(revoked)
        raise InvalidRefreshToken("The refresh token was already used; the session is ended.")

    async def _grace_successor(
        self,
        conn: Connection,
        hashed: bytes,
        sealed: bytes | None,
        now: dt.datetime,
        rotated_at: dt.datetime,
    ) -> str | None:
        if sealed is None or now - rotated_at > self.policy.grace:
            return None
        successor = self.seal.open(sealed, hashed)
        following = await self.sessions.token(conn, refresh_tokens.digest(successor))
        # Only the token *just* replaced gets the replay; an older one is reuse.
        return successor if following is not None and following.rotated_at is None else None

    async def logout(self, principal: Principal, ctx: RequestContext) -> None:
        if principal.session_id is None:
            return
        async with self.db.transaction() as conn:
            revoked = await self.revoker.end_session(
                conn, uuid.UUID(principal.session_id), "logout"
            )
            await self._record(
                conn,
                "auth.logout",
                "success",
                ctx,
                principal.user_id,
                principal.user_id,
                target_type="session",
                target_id=principal.session_id,
            )
        await self.revoker.announce(revoked)

    async def logout_all(self, principal: Principal, ctx: RequestContext) -> None:
        async with self.db.transaction() as conn:
            revoked = await self.revoker.end_all_sessions(conn, principal.user_id, "logout_all")
            await self._record(
                conn, "auth.logout_all", "success", ctx, principal.user_id, principal.user_id
            )
        await self.revoker.announce(revoked)

    async def live_sessions(self, principal: Principal) -> list[Session]:
        async with self.db.connection() as conn:
            return await self.sessions.live_for_user(conn, principal.user_id)

    async def end_session(
        self, principal: Principal, session_id: uuid.UUID, ctx: RequestContext
    ) -> None:
        async with self.db.transaction() as conn:
            owned = {s.id for s in await self.sessions.live_for_user(conn, principal.user_id)}
            if session_id not in owned:
                raise NotFound("No such session.")
            revoked = await self.revoker.end_session(conn, session_id, "revoked_by_user")
            await self._record(
                conn,
                "auth.session_revoked",
                "success",
                ctx,
                principal.user_id,
                principal.user_id,
                target_type="session",
                target_id=str(session_id),
            )
        await self.revoker.announce(revoked)

    async def _record(
        self,
        conn: Connection,
        action: str,
        outcome: str,
        ctx: RequestContext,
        actor_id: int | None,
        user_id: int | None,
        details: dict[str, object] | None = None,
        *,
        target_type: str = "user",
        target_id: str | None = None,
    ) -> None:
        await self.audit.record(
            conn,
            ctx,
            action,
            outcome=outcome,
            actor_id=actor_id,
            target_type=target_type if (target_id or user_id) else "",
            target_id=target_id or (str(user_id) if user_id is not None else ""),
            details=details,
        )
