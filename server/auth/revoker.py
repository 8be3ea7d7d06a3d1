"""Ending sessions: durable in PostgreSQL inside the caller's transaction, announced after it.

``end_session``/``end_all_sessions`` run in the service's transaction and return the revocation
rows they wrote; the service calls ``announce`` once that transaction committed, which updates
this process's denylist at once and fans the rows out to every other replica.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from server.auth.denylist import key_subject
from server.auth.repository import RevocationStore, SessionsRepository
from server.auth.revocation import Revocation, RevocationFeed
from server.db.database import Connection

# Revocation rows outlive every access token they could affect, plus the verifier's leeway.
_LEEWAY = dt.timedelta(seconds=30)


class Revoker:
    def __init__(
        self,
        sessions: SessionsRepository,
        store: RevocationStore,
        feed: RevocationFeed,
        *,
        keep_seconds: float,
    ) -> None:
        """``keep_seconds``: the longest anything can be trusted without looking again (an
        access token's lifetime, a cached API key); revocation rows must outlive it."""
        self.sessions = sessions
        self.store = store
        self.feed = feed
        self.ttl = dt.timedelta(seconds=keep_seconds) + _LEEWAY

    async def end_session(
        self, conn: Connection, session_id: uuid.UUID, reason: str
    ) -> list[Revocation]:
        if not await self.sessions.revoke(conn, session_id, reason):
            return []
        now = dt.datetime.now(dt.UTC)
        return [await self.store.create(conn, "session", str(session_id), now, now + self.ttl)]

    async def end_all_sessions(
        self, conn: Connection, user_id: int, reason: str, *, keep: uuid.UUID | None = None
    ) -> list[Revocation]:
        """Every session of the user (but ``keep``); with no ``keep``, every token issued so far."""
        ended = await self.sessions.revoke_all(conn, user_id, keep=keep, reason=reason)
        now = dt.datetime.now(dt.UTC)
        rows = [
            await self.store.create(conn, "session", str(sid), now, now + self.ttl) for sid in ended
        ]
        if keep is None:
            # Tokens carry whole-second iat: cutting at the start of this second lets a login
            # right after a logout-all work. Every session ended above has its own row, so only
            # a login racing this very second could slip through the user-level cut-off.
            cutoff = now.replace(microsecond=0)
            rows.append(await self.store.create(conn, "user", str(user_id), cutoff, now + self.ttl))
        return rows

    async def cut_off_role_holders(self, conn: Connection, role: str) -> list[Revocation]:
        """A role lost permissions: its holders' access tokens issued before this second are
        refused (a refresh reissues them with the role's permissions now) and every replica
        looks their API keys up again, so no key keeps a permission its owner lost."""
        now = dt.datetime.now(dt.UTC)
        # Whole seconds, as in end_all_sessions: a refresh right after this still works.
        cutoff = now.replace(microsecond=0)
        return await self.store.create_for_role_holders(conn, role, cutoff, now + self.ttl)

    async def end_key(self, conn: Connection, key_id: str) -> list[Revocation]:
        """A revoked API key: every replica drops it from its cache within a second."""
        now = dt.datetime.now(dt.UTC)
        return [await self.store.create(conn, "session", key_subject(key_id), now, now + self.ttl)]

    async def recheck_key(self, conn: Connection, key_id: str) -> list[Revocation]:
        """A rotated API key: replicas look it up again, so a cached old secret gets the grace
        period's end as its limit instead of its cache lifetime."""
        now = dt.datetime.now(dt.UTC)
        return [await self.store.create(conn, "user", key_subject(key_id), now, now + self.ttl)]

    async def announce(self, revocations: Sequence[Revocation]) -> None:
        for revocation in revocations:
            await self.feed.publish(revocation)
