"""Single-use, short-lived tokens for email verification and password reset (SHA-256 at rest)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Literal

from server.db.database import Connection
from server.db.sqlfiles import Queries

Purpose = Literal["email_verify", "password_reset"]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class OneTimeTokens:
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
        await conn.execute(self._create, digest(token), purpose, user_id, expires_at)
        return token

    async def redeem(self, conn: Connection, token: str, purpose: Purpose) -> int | None:
        """The user id for a valid, unused, unexpired token (and the token is spent), else None."""
        user_id: int | None = await conn.fetchval(self._redeem, digest(token), purpose)
        return user_id
