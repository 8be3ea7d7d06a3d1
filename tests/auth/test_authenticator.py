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
from server.auth.denylist import Denylist, Revocation
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


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


T0 = 1_800_000_000.0


def _timed() -> tuple[Authenticator, AccessTokenCodec, Denylist, Clock]:
    ring = KeyRing("EdDSA", [SigningKey("k1", "EdDSA", SIGNER, SIGNER.public_key())], None)
    clock = Clock(T0)
    codec = AccessTokenCodec(
        ring, issuer="https://issuer.test", audience="hotpath", lifetime=600, leeway=10, clock=clock
    )
    denylist = Denylist()
    return Authenticator(codec, denylist), codec, denylist, clock


# The authenticator notes the user a request acts for (acting_for, a context variable): these
# tests are coroutines, so each runs in a task of its own, as a request does, and nothing it
# sets leaks into the next test of the same worker (tests/db/test_write_marks.py checks that).
async def test_a_kept_token_is_refused_from_exp_plus_leeway_as_the_codec_refuses_it() -> None:
    authenticator, codec, _, clock = _timed()
    token, _ = codec.issue(sub="3", sid="s1", roles=["customer"], permissions=[])
    header = f"Bearer {token}"
    assert authenticator(header, {}) == authenticator(header, {})  # the second one kept
    clock.now = T0 + 609.999
    assert isinstance(authenticator(header, {}), Principal)
    clock.now = T0 + 610
    with pytest.raises(InvalidAccessToken):
        authenticator(header, {})
    clock.now = T0 + 609  # not kept any more: the codec decides afresh, and its cache too
    assert isinstance(authenticator(header, {}), Principal)


async def test_revocations_reach_a_kept_token_on_its_next_request() -> None:
    authenticator, codec, denylist, clock = _timed()
    first, _ = codec.issue(sub="3", sid="s1", roles=["customer"], permissions=[])
    other, _ = codec.issue(sub="3", sid="s2", roles=["customer"], permissions=[])
    stranger, _ = codec.issue(sub="4", sid="s3", roles=["customer"], permissions=[])
    for token in (first, other, stranger):
        assert isinstance(authenticator(f"Bearer {token}", {}), Principal)
    denylist.apply(Revocation(1, "session", "s1", T0, T0 + 600))
    with pytest.raises(InvalidAccessToken):
        authenticator(f"Bearer {first}", {})
    assert authenticator(f"Bearer {other}", {}).session_id == "s2"  # type: ignore[union-attr]
    denylist.apply(Revocation(2, "user", "3", T0 + 1, T0 + 600))  # logout everywhere
    with pytest.raises(InvalidAccessToken):
        authenticator(f"Bearer {other}", {})
    assert authenticator(f"Bearer {stranger}", {}).user_id == 4  # type: ignore[union-attr]
    clock.now = T0 + 2
    after, _ = codec.issue(sub="3", sid="s4", roles=["customer"], permissions=[])
    assert authenticator(f"Bearer {after}", {}).user_id == 3  # type: ignore[union-attr]
    denylist.prune(T0 + 601)  # the revocations expired: forgotten in place, still read live
    assert authenticator(f"Bearer {first}", {}).session_id == "s1"  # type: ignore[union-attr]


async def test_a_kept_header_answers_only_itself() -> None:
    authenticator, codec, _, _ = _timed()
    token, _ = codec.issue(sub="3", sid="s1", roles=["customer"], permissions=[])
    assert isinstance(authenticator(f"Bearer {token}", {}), Principal)
    with pytest.raises(InvalidAccessToken):
        authenticator(f"ApiKey {token}", {})
    with pytest.raises(InvalidAccessToken):
        authenticator(f"Basic {token}", {})
    with pytest.raises(InvalidAccessToken):
        authenticator(f"Bearer {token[:-2]}", {})
    assert isinstance(authenticator(f"bearer  {token} ", {}), Principal)


async def test_attaching_a_verifier_decides_kept_headers_afresh() -> None:
    authenticator, codec, _, _ = _timed()
    token, _ = codec.issue(sub="3", sid="s1", roles=["customer"], permissions=[])
    assert isinstance(authenticator(f"Bearer {token}", {}), Principal)
    everything = FakeKeys()
    everything.recognises = lambda token: True  # type: ignore[method-assign]
    authenticator.attach_keys(everything)
    with pytest.raises(InvalidAccessToken):
        await _resolve(authenticator(f"Bearer {token}", {}))
    assert everything.seen == [token]
