"""Bearer credentials -> Principal: a cached signature check plus two dictionary lookups.

An Authorization header whose access token was verified before is answered from one dictionary
keyed by the whole header: its principal, kept until the token's ``exp`` + leeway on the
codec's clock (the bound the codec's own cache holds it to), with the denylist asked on every
request. Signature, algorithm, key id, issuer and audience were checked when the token was first
verified; the key ring never changes in a process.

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


_BEARERS_KEPT = 10_000
_Kept = tuple[Principal, float, str, str, int]


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
        # Per Authorization header of a verified access token: its principal, when the codec
        # stops answering the token from its cache, and what revocation is checked against
        # (sid, sub, iat). At most _BEARERS_KEPT, emptied when full.
        self._bearers: dict[str, _Kept] = {}
        self._clock = codec.clock
        self._revoked_sessions, self._revoked_users = denylist.tables()
        self.attach_keys(None)

    def attach_keys(self, verifier: KeyVerifier | None) -> None:
        """API keys are verified by ``verifier`` from now on; None refuses them (the lifespan
        attaches one once PostgreSQL is there)."""
        self.api_keys = verifier
        # What a header is (a token or a key) may depend on the verifier: decided afresh.
        self._bearers.clear()
        # Asked on every bearer request: one bound check, not a None test and a method lookup.
        self._is_key = _no_key if verifier is None else verifier.recognises

    def __call__(self, authorization: str, scope: Scope) -> Principal | Awaitable[Principal]:
        """A principal at once for an access token (a cached signature check); an awaitable
        of one for an API key, which may need the database."""
        # A header verified before: what the codec's cache would answer (the token's claims
        # until exp + leeway on the codec's clock), without parsing the header or calling the
        # codec. Expired, or never seen: the header is parsed and the codec decides (and
        # refuses an expired token).
        kept = self._bearers.get(authorization)
        if kept is None or kept[1] <= self._clock():
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
            kept = self._verified(authorization, token)
        principal, _, sid, sub, iat = kept
        # Revocation on every request, as Denylist.is_revoked answers it, inline.
        if sid in self._revoked_sessions:
            raise _reject()
        cutoff = self._revoked_users.get(sub)
        if cutoff is not None and iat < cutoff[0]:
            raise _reject()
        acting_for(principal.user_id)  # its commits are this user's writes (read-your-writes)
        return principal

    def _verified(self, authorization: str, token: str) -> _Kept:
        bearers = self._bearers
        try:
            claims = self.codec.verify(token.strip())
        except InvalidToken:
            bearers.pop(authorization, None)
            raise _reject() from None
        # The principal a token stands for never changes, so it is built once (a frozen
        # dataclass costs ~1 µs); expiry and revocation are checked on every request.
        if len(bearers) >= _BEARERS_KEPT:
            bearers.clear()
        principal = Principal(
            user_id=int(claims.sub),
            session_id=claims.sid,
            roles=claims.roles,
            permissions=claims.permissions,
            issued_at=claims.iat,
        )
        # The codec's own bound: its cache answers while exp + leeway > now.
        until = float(claims.exp + self.codec.leeway)
        kept = bearers[authorization] = (principal, until, claims.sid, claims.sub, claims.iat)
        return kept

    async def _key(self, verifier: KeyVerifier, key: str, scope: Scope) -> Principal:
        try:
            principal = await verifier.verify(key, scope)
        except KeyRejected:
            raise _reject_key(
                "The API key is invalid, expired or revoked (a mistyped key fails its checksum)."
            ) from None
        acting_for(principal.user_id)
        return principal
