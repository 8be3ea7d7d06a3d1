"""The authenticator against a fake KeyVerifier: the seam apikeys plugs into, without apikeys."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.types import Scope

from server.auth.authenticator import (
    Authenticator,
    InvalidAccessToken,
    KeyRejected,
    KeyVerifier,
)
from server.auth.denylist import Denylist
from server.auth.keys import KeyRing, SigningKey
from server.auth.principal import Principal
from server.auth.tokens import AccessTokenCodec

SIGNER = Ed25519PrivateKey.generate()
KEY_PRINCIPAL = Principal(7, None, ("customer",), frozenset(), 0, api_key_id="k1")


class FakeKeys:
    """Keys are 'key-' + anything; 'key-good' verifies."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def recognises(self, token: str) -> bool:
        return token.startswith("key-")

    async def verify(self, token: str, scope: Scope | None = None) -> Principal:
        self.seen.append(token)
        if token != "key-good":
            raise KeyRejected("unknown")
        return KEY_PRINCIPAL


def _authenticator(keys: KeyVerifier | None) -> tuple[Authenticator, AccessTokenCodec]:
    ring = KeyRing("EdDSA", [SigningKey("k1", "EdDSA", SIGNER, SIGNER.public_key())], None)
    codec = AccessTokenCodec(ring, issuer="https://issuer.test", audience="hotpath")
    authenticator = Authenticator(codec, Denylist())
    authenticator.attach_keys(keys)
    return authenticator, codec


async def _resolve(found: Principal | Awaitable[Principal]) -> Principal:
    return found if isinstance(found, Principal) else await found


@pytest.mark.parametrize("scheme", ["Bearer", "ApiKey"])
async def test_a_key_goes_to_the_verifier(scheme: str) -> None:
    keys = FakeKeys()
    authenticator, _ = _authenticator(keys)
    assert await _resolve(authenticator(f"{scheme} key-good", {})) == KEY_PRINCIPAL
    with pytest.raises(InvalidAccessToken):
        await _resolve(authenticator(f"{scheme} key-bad", {}))
    assert keys.seen == ["key-good", "key-bad"]


async def test_a_token_is_never_taken_for_a_key() -> None:
    keys = FakeKeys()
    authenticator, codec = _authenticator(keys)
    token, _ = codec.issue(sub="3", sid="s1", roles=["customer"], permissions=[])
    assert (await _resolve(authenticator(f"Bearer {token}", {}))).user_id == 3
    with pytest.raises(InvalidAccessToken):
        authenticator(f"ApiKey {token}", {})  # the X-API-Key header carries keys only
    assert keys.seen == []


async def test_keys_are_refused_until_a_verifier_is_attached() -> None:
    authenticator, _ = _authenticator(None)
    for credentials in ("Bearer key-good", "ApiKey key-good"):
        with pytest.raises(InvalidAccessToken):
            await _resolve(authenticator(credentials, {}))
