"""Bearer credentials -> Principal: a cached signature check plus two dictionary lookups.

API keys are verified by a ``KeyVerifier`` the lifespan attaches (apikeys' ApiKeyVerifier): this
module declares what it needs of one and never imports the apikeys package.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from starlette.types import Scope

from server.auth.principal import Principal
from server.auth.revocation import Denylist
from server.auth.tokens import AccessTokenCodec, InvalidToken
from server.db.write_marks import acting_for
from server.web.errors import Unauthorized

_CHALLENGE = {"www-authenticate": 'Bearer error="invalid_token"'}


_PRINCIPALS_KEPT = 10_000


class KeyRejected(Exception):
    """Any reason a KeyVerifier refuses a key; the authenticator answers one uniform 401."""


class KeyVerifier(Protocol):
    def recognises(self, token: str) -> bool:
        """Whether ``token`` has an API key's shape (no lookup); such a token is never a JWT."""
        ...

    async def verify(self, token: str, scope: Scope | None = None) -> Principal:
        """The key's principal, or KeyRejected; ``scope`` is the request, for its audit trail."""
        ...


class InvalidAccessToken(Unauthorized):
    slug = "invalid-access-token"
    title = "Invalid access token"


class InvalidApiKey(InvalidAccessToken):
    slug = "invalid-api-key"
    title = "Invalid API key"


def _reject() -> InvalidAccessToken:
    # One answer for every failure: which check failed is for the logs, not for the client.
    return InvalidAccessToken(
        "The access token is invalid, expired or revoked.", headers=dict(_CHALLENGE)
    )


def _reject_key(detail: str) -> InvalidApiKey:
    # The client sent an API key (hp_...): naming a token it never sent would mislead it.
    return InvalidApiKey(detail, headers=dict(_CHALLENGE))


def _no_key(token: str) -> bool:
    return False


class Authenticator:
    def __init__(self, codec: AccessTokenCodec, denylist: Denylist) -> None:
        self.codec = codec
        self.denylist = denylist
        self._principals: dict[str, Principal] = {}
        self.attach_keys(None)

    def attach_keys(self, verifier: KeyVerifier | None) -> None:
        """API keys are verified by ``verifier`` from now on; None refuses them (the lifespan
        attaches one once PostgreSQL is there)."""
        self.api_keys = verifier
        # Asked on every bearer request: one bound check, not a None test and a method lookup.
        self._is_key = _no_key if verifier is None else verifier.recognises

    def __call__(self, authorization: str, scope: Scope) -> Principal | Awaitable[Principal]:
        """A principal at once for an access token (a cached signature check); an awaitable
        of one for an API key, which may need the database."""
        scheme, _, token = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "apikey") or not token:
            raise _reject()
        if self._is_key(token):
            verifier = self.api_keys
            assert verifier is not None  # _is_key recognises nothing without a verifier
            return self._key(verifier, token.strip(), scope)
        if scheme == "apikey":
            # X-API-Key carries API keys only, never a session's token.
            raise _reject_key("The X-API-Key header takes an API key (hp_...) only.")
        try:
            claims = self.codec.verify(token.strip())
        except InvalidToken:
            raise _reject() from None
        if self.denylist.is_revoked(sid=claims.sid, sub=claims.sub, iat=claims.iat):
            raise _reject()
        # Expiry and revocation were checked above, on every request; the principal a token
        # stands for never changes, so it is built once (a frozen dataclass costs ~1 µs).
        principal = self._principals.get(token)
        if principal is None:
            if len(self._principals) >= _PRINCIPALS_KEPT:
                self._principals.clear()
            principal = self._principals[token] = Principal(
                user_id=int(claims.sub),
                session_id=claims.sid,
                roles=claims.roles,
                permissions=claims.permissions,
                issued_at=claims.iat,
            )
        acting_for(principal.user_id)  # its commits are this user's writes (read-your-writes)
        return principal

    async def _key(self, verifier: KeyVerifier, key: str, scope: Scope) -> Principal:
        try:
            principal = await verifier.verify(key, scope)
        except KeyRejected:
            raise _reject_key(
                "The API key is invalid, expired or revoked (a mistyped key fails its checksum)."
            ) from None
        acting_for(principal.user_id)
        return principal
