"""Bearer credentials -> Principal: a cached signature check plus two dictionary lookups."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import Scope

from server.apikeys.format import looks_like_key
from server.apikeys.verifier import ApiKeyVerifier, KeyRejected
from server.auth.principal import Principal
from server.auth.revocation import Denylist
from server.auth.tokens import AccessTokenCodec, InvalidToken
from server.web.errors import Unauthorized

_CHALLENGE = {"www-authenticate": 'Bearer error="invalid_token"'}


_PRINCIPALS_KEPT = 10_000


class InvalidAccessToken(Unauthorized):
    slug = "invalid-access-token"
    title = "Invalid access token"


def _reject() -> InvalidAccessToken:
    # One answer for every failure: which check failed is for the logs, not for the client.
    return InvalidAccessToken(
        "The access token is invalid, expired or revoked.", headers=dict(_CHALLENGE)
    )


class Authenticator:
    def __init__(self, codec: AccessTokenCodec, denylist: Denylist) -> None:
        self.codec = codec
        self.denylist = denylist
        # Attached by the lifespan once PostgreSQL is there; until then keys are refused.
        self.api_keys: ApiKeyVerifier | None = None
        self._principals: dict[str, Principal] = {}

    def __call__(self, authorization: str, scope: Scope) -> Principal | Awaitable[Principal]:
        """A principal at once for an access token (a cached signature check); an awaitable
        of one for an API key, which may need the database."""
        scheme, _, token = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "apikey") or not token:
            raise _reject()
        if scheme == "apikey" and not looks_like_key(token):
            raise _reject()  # X-API-Key carries API keys only, never a session's token
        if looks_like_key(token):
            if self.api_keys is None:
                raise _reject()
            return self._key(self.api_keys, token.strip(), scope)
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
        return principal

    async def _key(self, verifier: ApiKeyVerifier, key: str, scope: Scope) -> Principal:
        try:
            return await verifier.verify(key, scope)
        except KeyRejected:
            raise _reject() from None
