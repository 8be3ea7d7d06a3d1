"""The I/O-free identity objects create_app builds before start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

from server.auth.authenticator import Authenticator
from server.auth.denylist import Denylist
from server.auth.keys import Algorithm, KeyRing, ensure_dev_key, load_keyring
from server.auth.tokens import AccessTokenCodec
from server.runtime.settings import Settings


@dataclass(frozen=True, slots=True)
class Identity:
    keyring: KeyRing
    codec: AccessTokenCodec
    denylist: Denylist
    authenticator: Authenticator
    # The rate limiter's per-account mail budget, when limits are on (set by create_app).
    account_mail: AccountMailBudget | None = None


class AccountMailBudget(Protocol):
    async def allows(self, email: str) -> bool: ...


def load_keys(settings: Settings) -> KeyRing:
    """The configured keys; outside production an empty key directory gets a generated key.

    Raises KeyRingError for a key ring that cannot sign, OSError for a directory out of reach.
    """
    algorithm = cast(Algorithm, settings.jwt_algorithm)
    if not settings.production:
        ensure_dev_key(settings.keys_dir, algorithm)
    return load_keyring(settings.keys_dir, algorithm=algorithm, active_kid=settings.jwt_active_kid)


def build_identity(settings: Settings) -> Identity:
    keyring = load_keys(settings)
    codec = AccessTokenCodec(
        keyring,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime=settings.access_token_ttl,
    )
    denylist = Denylist()
    return Identity(keyring, codec, denylist, Authenticator(codec, denylist))
