"""Forged and misused access tokens against GET /v1/users/me, through HTTP.

Every attack must get the same 401 problem (request_id aside) and the same challenge, so a
client cannot tell which check failed. Forgeries that need a valid signature are signed with
the app's own private key, so each case differs from an accepted token by its attack alone
(test_control_a_re_signed_token_is_accepted proves that forging itself works).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.app import HotpathApp
from server.auth.keys import KeyRing
from tests.fixtures.identity import Account, Accounts, Tokens

ME = "/v1/users/me"
CHALLENGE = 'Bearer error="invalid_token"'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


@dataclass
class Victim:
    app: HotpathApp
    http: httpx.AsyncClient
    accounts: Accounts
    account: Account
    tokens: Tokens
    claims: dict[str, Any]  # the payload of the victim's genuine access token

    @property
    def keyring(self) -> KeyRing:
        keyring: KeyRing = self.app.state.keyring
        return keyring

    def header(self, **extra: Any) -> dict[str, Any]:
        return {"typ": "at+jwt", "kid": self.keyring.active.kid, **extra}

    def payload(self, **changes: Any) -> dict[str, Any]:
        """The genuine claims with a fresh jti, changed as given (None removes a claim)."""
        claims = {**self.claims, "jti": secrets.token_urlsafe(16), **changes}
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self,
        payload: dict[str, Any],
        *,
        key: Ed25519PrivateKey | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        private = self.keyring.active.private if key is None else key
        assert isinstance(private, Ed25519PrivateKey)
        headers = self.header() if header is None else header
        return jwt.encode(payload, private, algorithm="EdDSA", headers=headers)


@pytest.fixture
async def victim(app: HotpathApp, http: httpx.AsyncClient, accounts: Accounts) -> Victim:
    account, tokens = await accounts.create_and_login("customer")
    claims = jwt.decode(tokens.access, options={"verify_signature": False})
    return Victim(app, http, accounts, account, tokens, claims)


def _attacker_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "kid": kid, "alg": "EdDSA"}


# --- the attacks -----------------------------------------------------------------------------


async def alg_none(v: Victim) -> str:
    return f"{_json(v.header(alg='none'))}.{_json(v.payload())}."


async def alg_none_with_a_signature(v: Victim) -> str:
    # A non-empty third segment, so the token gets past any "three segments" check.
    return f"{_json(v.header(alg='none'))}.{_json(v.payload())}.{_b64(b'x' * 64)}"


def _hs256(v: Victim, secret: bytes) -> str:
    signing_input = f"{_json(v.header(alg='HS256'))}.{_json(v.payload())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


async def hs256_with_the_public_key_pem(v: Victim) -> str:
    pem = v.keyring.active.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _hs256(v, pem)


async def hs256_with_the_public_key_raw(v: Victim) -> str:
    raw = v.keyring.active.public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return _hs256(v, raw)


async def unknown_kid(v: Victim) -> str:
    return v.sign(v.payload(), header=v.header(kid="no-such-key"))


async def no_kid(v: Victim) -> str:
    return v.sign(v.payload(), header={"typ": "at+jwt"})


async def foreign_key_with_our_kid(v: Victim) -> str:
    return v.sign(v.payload(), key=_attacker_key())


async def jku_to_attacker_keys(v: Victim) -> str:
    header = v.header(kid="attacker", jku="https://attacker.example/jwks.json")
    return v.sign(v.payload(), key=_attacker_key(), header=header)


async def jku_on_a_validly_signed_token(v: Victim) -> str:
    return v.sign(v.payload(), header=v.header(jku="https://attacker.example/jwks.json"))


async def x5u_to_attacker_certificate(v: Victim) -> str:
    header = v.header(kid="attacker", x5u="https://attacker.example/cert.pem")
    return v.sign(v.payload(), key=_attacker_key(), header=header)


async def x5u_on_a_validly_signed_token(v: Victim) -> str:
    return v.sign(v.payload(), header=v.header(x5u="https://attacker.example/cert.pem"))


async def embedded_jwk_of_the_attacker(v: Victim) -> str:
    key = _attacker_key()
    header = v.header(jwk=_public_jwk(key, v.keyring.active.kid))
    return v.sign(v.payload(), key=key, header=header)


async def embedded_jwk_on_a_validly_signed_token(v: Victim) -> str:
    private = v.keyring.active.private
    assert isinstance(private, Ed25519PrivateKey)
    header = v.header(jwk=_public_jwk(private, v.keyring.active.kid))
    return v.sign(v.payload(), header=header)


async def missing_exp(v: Victim) -> str:
    return v.sign(v.payload(exp=None))


async def expired_exp(v: Victim) -> str:
    now = int(time.time())
    return v.sign(v.payload(iat=now - 900, exp=now - 300))


async def future_nbf(v: Victim) -> str:
    return v.sign(v.payload(nbf=int(time.time()) + 300))


async def wrong_iss(v: Victim) -> str:
    return v.sign(v.payload(iss="https://attacker.example"))


async def wrong_aud(v: Victim) -> str:
    return v.sign(v.payload(aud="some-other-api"))


async def wrong_typ(v: Victim) -> str:
    # RFC 9068: an ID token or any other JWT signed by the same key is not an access token.
    return v.sign(v.payload(), header=v.header(typ="JWT"))


async def refresh_token_as_access_token(v: Victim) -> str:
    return v.tokens.refresh


async def tampered_sub(v: Victim) -> str:
    other = await v.accounts.create("admin")
    header, _, signature = v.tokens.access.split(".")
    assert (await v.http.get(ME, headers=v.tokens.headers)).status_code == 200  # now cached
    return f"{header}.{_json({**v.claims, 'sub': str(other.id)})}.{signature}"


async def logged_out_session(v: Victim) -> str:
    tokens = await v.accounts.login(v.account)
    headers = {"authorization": f"Bearer {tokens.access}"}
    assert (await v.http.get(ME, headers=headers)).status_code == 200  # verified and cached
    assert (await v.http.post("/v1/auth/logout", headers=headers)).status_code == 204
    return tokens.access


ATTACKS: dict[str, Callable[[Victim], Awaitable[str]]] = {
    f.__name__: f
    for f in (
        alg_none,
        alg_none_with_a_signature,
        hs256_with_the_public_key_pem,
        hs256_with_the_public_key_raw,
        unknown_kid,
        no_kid,
        foreign_key_with_our_kid,
        jku_to_attacker_keys,
        jku_on_a_validly_signed_token,
        x5u_to_attacker_certificate,
        x5u_on_a_validly_signed_token,
        embedded_jwk_of_the_attacker,
        embedded_jwk_on_a_validly_signed_token,
        missing_exp,
        expired_exp,
        future_nbf,
        wrong_iss,
        wrong_aud,
        wrong_typ,
        refresh_token_as_access_token,
        tampered_sub,
        logged_out_session,
    )
}


def _problem(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert isinstance(body.pop("request_id", None), str)
    return body


async def _reference_rejection(http: httpx.AsyncClient) -> httpx.Response:
    return await http.get(ME, headers={"authorization": "Bearer not.a-real.token"})


async def test_control_a_re_signed_token_is_accepted(victim: Victim) -> None:
    token = victim.sign(victim.payload())
    response = await victim.http.get(ME, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == victim.account.id


async def test_the_reference_rejection(http: httpx.AsyncClient) -> None:
    response = await _reference_rejection(http)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["content-type"] == "application/problem+json"
    assert _problem(response)["type"] == "urn:hotpath:problem:invalid-access-token"


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_is_rejected_like_any_bad_token(victim: Victim, attack: str) -> None:
    token = await ATTACKS[attack](victim)
    reference = _problem(await _reference_rejection(victim.http))

    response = await victim.http.get(ME, headers={"authorization": f"Bearer {token}"})

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["content-type"] == "application/problem+json"
    assert _problem(response) == reference
    # The victim's genuine token (another session) still works: no cache was poisoned.
    assert (await victim.http.get(ME, headers=victim.tokens.headers)).status_code == 200


def _misspelled(user_id: int) -> list[str]:
    """The victim's own id as int() would read it, but not as it is written."""
    digits = str(user_id)
    return [f" {digits}", f"{digits} ", f"+{digits}", f"0{digits}", f"{digits[0]}_{digits[1:]}"]


# A subject is a user id in one spelling (ASCII digits, no sign or leading zero, within
# bigint): int() would read " 1" and "+1" as user 1 and "1_0" as user 10, and a subject that is
# no number, or one past bigint, was a 500.
@pytest.mark.parametrize(
    "sub", ["abc", "1" * 40, " 1", "1_0", "+1", "01", "-1", "0", "9223372036854775808", "own"]
)
async def test_a_subject_that_is_not_a_user_id_is_rejected(victim: Victim, sub: str) -> None:
    reference = _problem(await _reference_rejection(victim.http))
    subs = _misspelled(victim.account.id) if sub == "own" else [sub]
    for forged in subs:
        token = victim.sign(victim.payload(sub=forged))

        response = await victim.http.get(ME, headers={"authorization": f"Bearer {token}"})

        assert response.status_code == 401, (forged, response.text)
        assert response.headers["www-authenticate"] == CHALLENGE
        assert response.headers["content-type"] == "application/problem+json"
        assert _problem(response) == reference
