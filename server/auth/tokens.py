"""Access tokens: short-lived JWTs (RFC 9068 profile) signed by the key ring's active key.

A token this process has already verified is answered from a dictionary keyed by the exact token
string, until it expires; checking the revocation denylist stays with the caller.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import jwt

from server.auth.keys import KeyRing

if TYPE_CHECKING:
    from jwt.types import Options

TYP = "at+jwt"
_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Keys fetched from a URL or carried in the token itself must never be trusted; "crit" would
# oblige us to understand extensions we do not implement.
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
# Compact serialization only: three unpadded base64url segments. pyjwt tolerates "=" padding,
# which would let one token have several spellings.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_MAX_TOKEN_LENGTH = 8192
_MAX_LEEWAY = 30
_MAX_SHARED = 4096
# The subject is a user id in one spelling: ASCII digits, no sign or leading zero, within
# bigint. int() would also read " 1", "+1", "01" and "1_0" (user 10), and a subject past bigint
# or not a number at all would fail later as a 500.
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_USER_ID = 2**63 - 1
# Time claims are checked against the codec's clock (injectable), so pyjwt skips its own.
_OPTIONS: Options = {
    "require": ["exp", "iat", "iss", "aud", "sub", "jti"],
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}
H = TypeVar("H", tuple[str, ...], frozenset[str])


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    sid: str
    jti: str
    iat: int
    exp: int
    roles: tuple[str, ...]
    permissions: frozenset[str]


class InvalidToken(Exception):
    """Any reason to refuse a token; the message is for logs, never for the client."""


class AccessTokenCodec:
    """Issues and verifies access tokens; verification results are cached until ``exp``."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        lifetime: int = 600,
        leeway: int = 10,
        cache_size: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must not be empty")
        if lifetime <= 0 or not 0 <= leeway <= _MAX_LEEWAY or cache_size < 1:
            raise ValueError(
                f"need lifetime > 0, 0 <= leeway <= {_MAX_LEEWAY}, cache_size >= 1;"
                f" got {lifetime}, {leeway}, {cache_size}"
            )
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.leeway = leeway
        self._cache_size = cache_size
        self._clock = self.clock = clock  # public: the authenticator reads the same clock
        self._cache: dict[str, AccessClaims] = {}
        # Tokens mostly carry one of a few role and permission sets: keeping one copy of each
        # instead of one per cached token saves about 600 bytes an entry.
        self._shared: dict[Any, Any] = {}

    def issue(
        self, *, sub: str, sid: str, roles: Iterable[str], permissions: Iterable[str]
    ) -> tuple[str, AccessClaims]:
        if isinstance(roles, str) or isinstance(permissions, str):
            raise TypeError("roles and permissions must be collections of strings, not a string")
        if not _user_id(sub) or not sid:
            raise ValueError("sub must be a user id and sid must not be empty")
        now = int(self._clock())
        claims = AccessClaims(
            sub=sub,
            sid=sid,
            jti=secrets.token_urlsafe(16),
            iat=now,
            exp=now + self.lifetime,
            roles=tuple(roles),
            permissions=frozenset(permissions),
        )
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": claims.sub,
            "sid": claims.sid,
            "jti": claims.jti,
            "iat": claims.iat,
            "exp": claims.exp,
            "roles": list(claims.roles),
            "perms": sorted(claims.permissions),
        }
        key = self.keyring.active
        assert key.private is not None  # KeyRing refuses an active key that cannot sign
        headers = {"typ": TYP, "kid": key.kid}
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers=headers), claims

    def verify(self, token: str) -> AccessClaims:
        claims = self._cache.get(token)
        if claims is not None:
            if claims.exp + self.leeway > self._clock():
                return claims
            del self._cache[token]
            raise InvalidToken("the token has expired")
        claims = self._verify_signed(token)
        if len(self._cache) >= self._cache_size:
            self._shrink()
        self._cache[token] = claims
        return claims

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)

    def cache_len(self) -> int:
        return len(self._cache)

    def _verify_signed(self, token: str) -> AccessClaims:
        if len(token) > _MAX_TOKEN_LENGTH or not _COMPACT.fullmatch(token):
            raise InvalidToken("not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed header: {exc}") from None
        forbidden = _FORBIDDEN_HEADERS.intersection(header)
        if forbidden:
            raise InvalidToken(f"forbidden header parameters: {', '.join(sorted(forbidden))}")
        if header.get("alg") != self.keyring.algorithm:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise InvalidToken(f"typ {typ!r} is not at+jwt")
        kid = header.get("kid")
        key = self.keyring.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken(f"unknown kid {kid!r}")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[self.keyring.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options=_OPTIONS,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"rejected: {exc}") from None
        return self._claims(payload)

    def _claims(self, payload: dict[str, Any]) -> AccessClaims:
        now = self._clock()
        exp, iat, nbf = payload["exp"], payload["iat"], payload.get("nbf", 0)
        if not (_is_int(exp) and _is_int(iat) and _is_int(nbf)):
            raise InvalidToken("exp, iat and nbf must be integers")
        if exp + self.leeway <= now:
            raise InvalidToken("the token has expired")
        if iat > now + self.leeway or nbf > now + self.leeway:
            raise InvalidToken("the token is not valid yet (iat or nbf in the future)")
        if exp <= iat:
            raise InvalidToken("exp is not after iat")
        sub, sid, jti = payload["sub"], payload.get("sid"), payload["jti"]
        roles, perms = payload.get("roles"), payload.get("perms")
        if not (_text(sub) and _text(sid) and _text(jti)):
            raise InvalidToken("sub, sid and jti must be non-empty strings")
        if not _user_id(sub):
            raise InvalidToken("sub is not a user id")
        if not (_texts(roles) and _texts(perms)):
            raise InvalidToken("roles and perms must be lists of strings")
        roles_, perms_ = self._share(tuple(roles)), self._share(frozenset(perms))
        return AccessClaims(sub, sid, jti, iat, exp, roles_, perms_)

    def _share(self, value: H) -> H:
        shared: H | None = self._shared.get(value)
        if shared is None:
            if len(self._shared) >= _MAX_SHARED:
                self._shared.clear()
            shared = self._shared[value] = value
        return shared

    def _shrink(self) -> None:
        # One pass, run only when full, leaves at most half: amortised O(1) per insertion.
        deadline = self._clock() - self.leeway
        live = {token: c for token, c in self._cache.items() if c.exp > deadline}
        keep = self._cache_size // 2
        if len(live) > keep:
            live = dict(islice(live.items(), len(live) - keep, None))
        self._cache = live


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _user_id(sub: str) -> bool:
    return _USER_ID.fullmatch(sub) is not None and int(sub) <= _MAX_USER_ID


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""


def _texts(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
