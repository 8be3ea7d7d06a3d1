"""API key -> Principal. A key this process verified before costs a dictionary lookup.

The cache holds a verified key for at most ``cache_seconds``; revocation reaches it sooner
through the denylist (the revoking replica fans a ``apikey:<id>`` revocation out to every
replica within a second), and an owner's demotion or disabling (a user-level revocation) makes
the entry resolve again from PostgreSQL, so a key never grants more than its owner has now.
Usage (last_used_at, request_count) is counted here and written in batches, never per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope
from structlog.typing import FilteringBoundLogger

from server.apikeys.format import MalformedKey, looks_like_key, parse
from server.apikeys.repository import ApiKeysRepository, KeyCredentials
from server.audit.repository import AuditRepository
from server.auth.authenticator import KeyRejected
from server.auth.denylist import Denylist, key_subject
from server.auth.principal import Principal
from server.db.database import Database
from server.web.context import RequestContext, scope_context

_AUDIT_EVERY = 60.0
_MAX_CACHE = 50_000


def secret_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


@dataclass(slots=True)
class _Entry:
    principal: Principal
    cached_at: float
    valid_until: float


class ApiKeyVerifier:
    """The authenticator's KeyVerifier (server/auth/authenticator.py)."""

    # The format's own check, with no method wrapped around it: it runs on every bearer request.
    recognises = staticmethod(looks_like_key)

    def __init__(
        self,
        db: Database,
        keys: ApiKeysRepository,
        audit: AuditRepository,
        denylist: Denylist,
        logger: FilteringBoundLogger,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.keys = keys
        self.audit = audit
        self.denylist = denylist
        self.logger = logger
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, _Entry] = {}
        self._usage: dict[str, list[float]] = {}  # key id -> [requests, last used]
        self._audited: dict[str, float] = {}

    async def verify(self, token: str, scope: Scope | None = None) -> Principal:
        """The key's principal, or KeyRejected; ``scope`` (the request) goes into the audit
        event of a revoked, expired or rotated-out key being presented."""
        now = self.clock()
        entry = self._cache.get(token)
        if entry is not None:
            if self._still_good(entry, now):
                self._count(entry.principal, now)
                return entry.principal
            del self._cache[token]
        try:
            parsed = parse(token)  # a typo is refused here, with no database lookup
        except MalformedKey:
            raise KeyRejected("malformed") from None
        async with self.db.connection() as conn:
            found = await self.keys.credentials(conn, parsed.key_id)
        principal, valid_until = await self._check(found, token, now, scope)
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[token] = _Entry(principal, now, valid_until)
        self._count(principal, now)
        return principal

    def _still_good(self, entry: _Entry, now: float) -> bool:
        principal = entry.principal
        assert principal.api_key_id is not None
        revoked = self.denylist.is_revoked(
            sid=key_subject(principal.api_key_id), sub="", iat=int(entry.cached_at)
        )
        # Cut-offs (the owner demoted or disabled, the key rotated) mean "look again", not
        # "refuse". A user-level cut-off is whole seconds: anything cached in that second
        # resolves again.
        stale_before = int(entry.cached_at) - 1
        owner_changed = self.denylist.is_revoked(
            sid="", sub=str(principal.user_id), iat=stale_before
        )
        rotated = self.denylist.is_revoked(
            sid="", sub=key_subject(principal.api_key_id), iat=stale_before
        )
        return not (revoked or owner_changed or rotated or now >= entry.valid_until)

    async def _check(
        self, found: KeyCredentials | None, token: str, now: float, scope: Scope | None
    ) -> tuple[Principal, float]:
        if found is None:
            raise KeyRejected("unknown key")
        digest = secret_digest(token)
        valid_until = now + self.cache_seconds
        if not hmac.compare_digest(digest, found.secret_hash):
            previous = found.previous_secret_hash
            grace = found.previous_valid_until
            if previous is None or grace is None or not hmac.compare_digest(digest, previous):
                raise KeyRejected("wrong secret")
            if grace.timestamp() <= now:
                await self._audit_rejection(found, "rotated_out", scope)
                raise KeyRejected("rotated out")
            valid_until = min(valid_until, grace.timestamp())
        if found.revoked_at is not None:
            await self._audit_rejection(found, "revoked", scope)
            raise KeyRejected("revoked")
        if found.expires_at is not None:
            if found.expires_at.timestamp() <= now:
                await self._audit_rejection(found, "expired", scope)
                raise KeyRejected("expired")
            valid_until = min(valid_until, found.expires_at.timestamp())
        if not found.owner_active:
            raise KeyRejected("owner inactive")
        principal = Principal(
            user_id=found.user_id,
            session_id=None,
            roles=found.owner_roles,
            # Never more than the owner holds now: a demoted owner demotes the key.
            permissions=found.scopes & found.owner_permissions,
            issued_at=int(now),
            api_key_id=found.id,
            rate_tier=found.rate_tier,
        )
        return principal, valid_until

    async def _audit_rejection(
        self, found: KeyCredentials, reason: str, scope: Scope | None
    ) -> None:
        now = self.clock()
        if now - self._audited.get(found.id, 0.0) < _AUDIT_EVERY:
            return  # one event a minute per key: a hammering client must not flood the trail
        self._audited[found.id] = now
        async with self.db.transaction() as conn:
            await self.audit.record(
                conn,
                RequestContext() if scope is None else scope_context(scope),
                "apikey.rejected",
                outcome="denied",
                actor_id=found.user_id,
                target_type="apikey",
                target_id=found.id,
                details={"reason": reason},
            )

    def _count(self, principal: Principal, now: float) -> None:
        assert principal.api_key_id is not None
        usage = self._usage.get(principal.api_key_id)
        if usage is None:
            self._usage[principal.api_key_id] = [1.0, now]
        else:
            usage[0] += 1
            usage[1] = now

    async def flush_usage(self) -> None:
        """Write the counted requests in one statement (the app calls it every second)."""
        if not self._usage:
            return
        batch, self._usage = self._usage, {}
        ids = list(batch)
        try:
            async with self.db.connection() as conn:
                await self.keys.record_usage(
                    conn,
                    ids,
                    [int(batch[i][0]) for i in ids],
                    [dt.datetime.fromtimestamp(batch[i][1], dt.UTC) for i in ids],
                )
        except Exception:
            # Put the counts back so the next flush writes them.
            for key_id, (count, used) in batch.items():
                current = self._usage.setdefault(key_id, [0.0, used])
                current[0] += count
                current[1] = max(current[1], used)
            raise
