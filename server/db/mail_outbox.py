"""Outgoing mail as outbox rows (migration 0011): a request writes its mail in the caller's
transaction, so the mail exists exactly when the change that causes it (a new account, a reset
token) is committed, and the worker (server/runtime/mail_worker.py) sends it: no request waits
on SMTP. Recipient, subject and body are sealed (server/runtime/sealing.py): bodies carry live
one-time tokens, which the database otherwise keeps only as hashes. A finished mail keeps no
content."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidTag

from server.db.database import Connection
from server.db.sqlfiles import Queries
from server.runtime.mail import OutgoingEmail
from server.runtime.sealing import Sealer

_INFO = b"hotpath mail outbox"
_AAD = b"hotpath outgoing mail"


class _Sealed(msgspec.Struct, frozen=True):
    to: str
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class ClaimedMail:
    id: int
    kind: str
    # None when it cannot be read: sealed under another HOTPATH_SECRET_KEY.
    message: OutgoingEmail | None
    attempts: int
    created_at: dt.datetime


class MailOutbox:
    def __init__(self, queries: Queries, secret_key: str) -> None:
        self._sealer = Sealer(secret_key, info=_INFO, aad=_AAD)
        self._create = queries.sql("create_mail")
        self._claim = queries.sql("update_mail_claim")
        self._sent = queries.sql("update_mail_sent")
        self._failed = queries.sql("update_mail_failed")
        self._released = queries.sql("update_mail_released")
        self._prune = queries.sql("delete_mail_finished")
        self._backlog = queries.sql("get_mail_backlog")

    async def add(
        self, conn: Connection, message: OutgoingEmail, kind: str, *, keep_trying: dt.timedelta
    ) -> None:
        """Queue ``message``; the worker tries to send it for ``keep_trying`` (the life of the
        token it carries: a later mail would be no use)."""
        content = msgspec.json.encode(_Sealed(message.to, message.subject, message.text))
        sealed = self._sealer.seal(content.decode())
        await conn.execute(self._create, kind, sealed, keep_trying.total_seconds())

    async def claim(
        self, conn: Connection, *, limit: int, lease_seconds: float, token: uuid.UUID
    ) -> list[ClaimedMail]:
        records = await conn.fetch(self._claim, limit, lease_seconds, token)
        return [
            ClaimedMail(r["id"], r["kind"], self._open(r["sealed"]), r["attempts"], r["created_at"])
            for r in records
        ]

    async def sent(self, conn: Connection, mail_id: int, token: uuid.UUID) -> bool:
        """False when the claim was lost (the lease ran out and another worker took it)."""
        return await conn.fetchval(self._sent, mail_id, token) is not None

    async def failed(
        self,
        conn: Connection,
        mail_id: int,
        token: uuid.UUID,
        *,
        retry_at: dt.datetime | None,
        error: str,
    ) -> str | None:
        """The mail's status now: 'pending' (tried again at ``retry_at``) or 'dead' (no
        ``retry_at``, or past its time); None when the claim was lost."""
        status: str | None = await conn.fetchval(self._failed, mail_id, token, retry_at, error)
        return status

    async def release(self, conn: Connection, mail_id: int, token: uuid.UUID) -> None:
        await conn.execute(self._released, mail_id, token)

    async def prune(self, conn: Connection, *, older_than: float, limit: int) -> int:
        pruned: int = await conn.fetchval(self._prune, older_than, limit)
        return pruned

    async def backlog(self, conn: Connection) -> tuple[int, float]:
        """(pending mails, the oldest one's age in seconds)."""
        r = await conn.fetchrow(self._backlog)
        assert r is not None
        return r["pending"], r["oldest_age"]

    def _open(self, sealed: bytes) -> OutgoingEmail | None:
        try:
            content = msgspec.json.decode(self._sealer.open(sealed), type=_Sealed)
        except InvalidTag:
            return None
        return OutgoingEmail(content.to, content.subject, content.text)
