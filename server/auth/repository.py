"""auth's named queries: sessions (refresh-token families) and their refresh tokens, single-use
tokens, and revocation rows. The login throttle's counters are in throttle.py, whose queries
compute the backoff."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg

from server.auth.denylist import Revocation, RevocationKind
from server.db.database import Connection, record_to
from server.db.sqlfiles import Queries

Purpose = Literal["email_verify", "password_reset"]


@dataclass(frozen=True, slots=True)
class Session:
    id: uuid.UUID
    user_id: int
    created_at: dt.datetime
    last_used_at: dt.datetime
    idle_expires_at: dt.datetime
    expires_at: dt.datetime
    user_agent: str
    ip: str
    revoked_at: dt.datetime | None

    def live(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at and now < self.idle_expires_at


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token_hash: bytes
    session_id: uuid.UUID
    generation: int
    created_at: dt.datetime
    rotated_at: dt.datetime | None
    successor_sealed: bytes | None


class SessionsRepository:
    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._create = q("create_session")
        self._lock = q("get_session_for_update")
        self._live = q("list_live_sessions")
        self._used = q("update_session_used")
        self._revoke = q("update_session_revoked")
        self._revoke_user = q("update_user_sessions_revoked")
        self._create_token = q("create_refresh_token")
        self._get_token = q("get_refresh_token")
        self._rotated = q("update_refresh_token_rotated")
        self._clear = q("update_refresh_successor_cleared")

    async def create(
        self,
        conn: Connection,
        *,
        user_id: int,
        idle_expires_at: dt.datetime,
        expires_at: dt.datetime,
        user_agent: str,
        ip: str,
    ) -> Session:
        record = await conn.fetchrow(
            self._create, uuid.uuid4(), user_id, idle_expires_at, expires_at, user_agent, ip
        )
        assert record is not None
        return record_to(Session, record)

    async def lock(self, conn: Connection, session_id: uuid.UUID) -> Session | None:
        record = await conn.fetchrow(self._lock, session_id)
        return None if record is None else record_to(Session, record)

    async def live_for_user(self, conn: Connection, user_id: int) -> list[Session]:
        return [record_to(Session, r) for r in await conn.fetch(self._live, user_id)]

    async def touch(self, conn: Connection, session_id: uuid.UUID, idle_until: dt.datetime) -> None:
        await conn.execute(self._used, session_id, idle_until)

    async def revoke(self, conn: Connection, session_id: uuid.UUID, reason: str) -> bool:
        return await conn.execute(self._revoke, session_id, reason) == "UPDATE 1"

    async def revoke_all(
        self, conn: Connection, user_id: int, *, keep: uuid.UUID | None, reason: str
    ) -> list[uuid.UUID]:
        return [r["id"] for r in await conn.fetch(self._revoke_user, user_id, keep, reason)]

    async def add_token(
        self, conn: Connection, token_hash: bytes, session_id: uuid.UUID, generation: int
    ) -> None:
        await conn.execute(self._create_token, token_hash, session_id, generation)

    async def token(self, conn: Connection, token_hash: bytes) -> RefreshToken | None:
        record = await conn.fetchrow(self._get_token, token_hash)
        return None if record is None else record_to(RefreshToken, record)

    async def mark_rotated(self, conn: Connection, token_hash: bytes, sealed: bytes) -> bool:
        return await conn.execute(self._rotated, token_hash, sealed) == "UPDATE 1"

    async def clear_old_successors(self, conn: Connection, grace_seconds: float) -> None:
        await conn.execute(self._clear, grace_seconds)


def one_time_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class OneTimeTokens:
    """Single-use, short-lived tokens for email verification and password reset (SHA-256 at
    rest)."""

    def __init__(self, queries: Queries) -> None:
        self._create = queries.sql("create_one_time_token")
        self._redeem = queries.sql("update_one_time_token_used")
        self._drop = queries.sql("delete_one_time_tokens_for_user")

    async def issue(
        self, conn: Connection, user_id: int, purpose: Purpose, expires_at: dt.datetime
    ) -> str:
        """A new token for the user; older unused tokens of the same purpose stop working."""
        await conn.execute(self._drop, user_id, purpose)
        token = secrets.token_urlsafe(32)
        await conn.execute(self._create, one_time_digest(token), purpose, user_id, expires_at)
        return token

    async def retire(self, conn: Connection, user_id: int, purpose: Purpose) -> None:
        """The user's unused tokens of this purpose stop working, and none replaces them."""
        await conn.execute(self._drop, user_id, purpose)

    async def redeem(self, conn: Connection, token: str, purpose: Purpose) -> int | None:
        """The user id for a valid, unused, unexpired token (and the token is spent), else None."""
        user_id: int | None = await conn.fetchval(self._redeem, one_time_digest(token), purpose)
        return user_id


def _revocation(row: asyncpg.Record) -> Revocation:
    not_before, expires_at = row["not_before"].timestamp(), row["expires_at"].timestamp()
    return Revocation(row["id"], row["kind"], row["subject"], not_before, expires_at)


class RevocationStore:
    def __init__(self, queries: Queries) -> None:
        self._create = queries.sql("create_revocation")
        self._create_for_role = queries.sql("create_role_holder_revocations")
        self._list_after = queries.sql("list_revocations_after")
        self._list_by_id = queries.sql("list_revocations_by_id")
        self._delete_expired = queries.sql("delete_expired_revocations")

    async def create(
        self,
        conn: Connection,
        kind: RevocationKind,
        subject: str,
        not_before: dt.datetime,
        expires_at: dt.datetime,
    ) -> Revocation:
        record = await conn.fetchrow(self._create, kind, subject, not_before, expires_at)
        assert record is not None
        return _revocation(record)

    async def create_for_role_holders(
        self, conn: Connection, role: str, not_before: dt.datetime, expires_at: dt.datetime
    ) -> list[Revocation]:
        records = await conn.fetch(self._create_for_role, role, not_before, expires_at)
        return [_revocation(r) for r in records]

    async def list_after(self, conn: Connection, last_id: int, limit: int) -> list[Revocation]:
        return [_revocation(r) for r in await conn.fetch(self._list_after, last_id, limit)]

    async def list_by_id(self, conn: Connection, ids: Sequence[int]) -> list[Revocation]:
        return [_revocation(r) for r in await conn.fetch(self._list_by_id, list(ids))]

    async def delete_expired(self, conn: Connection) -> int:
        status = await conn.execute(self._delete_expired)
        return int(status.rpartition(" ")[2])
