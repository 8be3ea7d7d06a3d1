"""What this process knows has been revoked, answered without I/O on every request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import orjson

RevocationKind = Literal["session", "user"]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One row of ``revocations``; times are epoch seconds.

    kind "session": every access token whose ``sid`` is ``subject`` is revoked. kind "user":
    every access token of user ``subject`` with ``iat < not_before`` is revoked. No access token
    affected by it can still be valid after ``expires_at``.
    """

    id: int
    kind: RevocationKind
    subject: str
    not_before: float
    expires_at: float

    def to_json(self) -> str:
        return orjson.dumps(self).decode()

    @classmethod
    def from_json(cls, data: object) -> Revocation:
        """Parses a pub/sub payload; raises ValueError, TypeError or KeyError if malformed."""
        if not isinstance(data, str | bytes):
            raise TypeError(f"unexpected payload type {type(data).__name__}")
        raw = orjson.loads(data)
        if raw["kind"] not in ("session", "user"):
            raise ValueError("unknown revocation kind")
        return cls(
            int(raw["id"]),
            raw["kind"],
            str(raw["subject"]),
            float(raw["not_before"]),
            float(raw["expires_at"]),
        )


def key_subject(key_id: str) -> str:
    """The subject naming an API key in revocations: a "session" row revokes the key, a "user"
    row makes every replica look it up again (a rotation, an owner's demotion)."""
    return "apikey:" + key_id


class Denylist:
    """Revoked sessions and per-user cut-offs; applying a revocation twice changes nothing."""

    def __init__(self) -> None:
        self._sessions: dict[str, float] = {}
        # sub -> (not_before, expires_at). Merging keeps the latest cut-off and the latest expiry,
        # which can only revoke more, never less.
        self._users: dict[str, tuple[float, float]] = {}
        # Highest id applied from any source; the feed's poll keeps its own cursor.
        self.last_id = 0

    def apply(self, rev: Revocation) -> None:
        if rev.kind == "session":
            self._sessions[rev.subject] = max(rev.expires_at, self._sessions.get(rev.subject, 0.0))
        else:
            not_before, expires_at = self._users.get(rev.subject, (0.0, 0.0))
            self._users[rev.subject] = (
                max(not_before, rev.not_before),
                max(expires_at, rev.expires_at),
            )
        self.last_id = max(self.last_id, rev.id)

    def tables(self) -> tuple[Mapping[str, float], Mapping[str, tuple[float, float]]]:
        """The revoked sessions (sid -> expiry) and users' cut-offs (sub -> (not_before,
        expiry)), live: the authenticator asks them inline, as ``is_revoked`` does. They are
        changed in place, never replaced."""
        return self._sessions, self._users

    def is_revoked(self, *, sid: str, sub: str, iat: int) -> bool:
        if sid in self._sessions:
            return True
        cutoff = self._users.get(sub)
        return cutoff is not None and iat < cutoff[0]

    def prune(self, now: float) -> int:
        """Forget entries no unexpired access token can match; returns how many went."""
        sessions = [sid for sid, expires_at in self._sessions.items() if expires_at <= now]
        users = [sub for sub, (_, expires_at) in self._users.items() if expires_at <= now]
        for sid in sessions:
            del self._sessions[sid]
        for sub in users:
            del self._users[sub]
        return len(sessions) + len(users)

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users)
