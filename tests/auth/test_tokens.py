from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from server.auth import tokens
from server.auth.keys import KeyRing, SigningKey
from server.auth.tokens import AccessClaims, AccessTokenCodec, InvalidToken
from tests.fixtures.clock import Clock

ISSUER = "https://auth.hotpath.test"
AUDIENCE = "hotpath-api"
T0 = 1_700_000_000
SID = "6f1c7e0a-2b1f-4c55-9a0e-3d1f5b7c9e21"
SECRET = b"hs256-secret-" + b"x" * 40
SIGNER = Ed25519PrivateKey.generate()
JSON = dict[str, Any]


def ed_key(kid: str, private: Ed25519PrivateKey, *, verify_only: bool = False) -> SigningKey:
    return SigningKey(kid, "EdDSA", None if verify_only else private, private.public_key())


def make_codec(ring: KeyRing, clock: Callable[[], float], **options: Any) -> AccessTokenCodec:
    return AccessTokenCodec(ring, issuer=ISSUER, audience=AUDIENCE, clock=clock, **options)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def codec(clock: Clock) -> AccessTokenCodec:
    return make_codec(KeyRing("EdDSA", [ed_key("k1", SIGNER)], None), clock)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature check the codec makes, by token."""
    calls: list[str] = []
    real = jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    return calls


def issue(codec: AccessTokenCodec, **changes: Any) -> tuple[str, AccessClaims]:
    fields: JSON = {"sub": "42", "sid": SID, "roles": ["member"], "permissions": ["orders:read"]}
    return codec.issue(**(fields | changes))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> JSON:
    result: JSON = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return result


def assemble(header: JSON, payload: JSON, sign: Callable[[bytes], bytes]) -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return signing_input + "." + b64(sign(signing_input.encode()))


def header(**changes: Any) -> JSON:
    return _changed({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}, changes)


def payload(**changes: Any) -> JSON:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "sid": SID,
        "jti": "jti-1",
        "iat": T0,
        "exp": T0 + 600,
        "roles": ["member"],
        "perms": ["orders:read"],
    }
    return _changed(claims, changes)


def _changed(base: JSON, changes: JSON) -> JSON:
    """Apply changes; a value of ``...`` removes the key."""
    merged = base | changes
    return {key: value for key, value in merged.items() if value is not ...}


def signed(head: JSON | None = None, body: JSON | None = None, key: Any = SIGNER) -> str:
    return assemble(head or header(), body or payload(), key.sign)


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def test_forged_helper_builds_tokens_the_codec_accepts(codec: AccessTokenCodec) -> None:
    """Every attack below changes one thing in this token; without the change it verifies."""
    claims = codec.verify(signed())
    assert (claims.sub, claims.sid, claims.jti, claims.exp) == ("42", SID, "jti-1", T0 + 600)


def test_round_trip_eddsa(codec: AccessTokenCodec) -> None:
    token, issued = issue(codec, roles=["admin", "member"], permissions=["a:read", "b:write"])
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}
    body = unb64(token.split(".")[1])
    assert body == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "sid": SID,
        "jti": issued.jti,
        "iat": T0,
        "exp": T0 + 600,
        "roles": ["admin", "member"],
        "perms": ["a:read", "b:write"],
    }
    assert len(issued.jti) >= 22
    verified = codec.verify(token)
    assert verified == issued
    assert verified.roles == ("admin", "member")
    assert verified.permissions == frozenset({"a:read", "b:write"})


def test_round_trip_hs256(clock: Clock) -> None:
    ring = KeyRing("HS256", [SigningKey("s1", "HS256", SECRET, SECRET)], None)
    codec = make_codec(ring, clock, lifetime=300)
    token, issued = issue(codec)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt", "kid": "s1"}
    assert issued.exp - issued.iat == 300
    assert codec.verify(token) == issued
    other = make_codec(
        KeyRing("HS256", [SigningKey("s1", "HS256", b"z" * 40, b"z" * 40)], None), clock
    )
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        other.verify(token)


def test_every_token_has_its_own_jti(codec: AccessTokenCodec) -> None:
    assert len({issue(codec)[1].jti for _ in range(50)}) == 50


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(clock: Clock) -> None:
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    before = make_codec(KeyRing("EdDSA", [ed_key("old", old_key)], None), clock)
    old_token, _ = issue(before)
    during = make_codec(
        KeyRing("EdDSA", [ed_key("old", old_key, verify_only=True), ed_key("new", new_key)], "new"),
        clock,
    )
    assert during.verify(old_token).sub == "42"
    new_token, _ = issue(during)
    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    assert during.verify(new_token).sub == "42"
    after = make_codec(KeyRing("EdDSA", [ed_key("new", new_key)], None), clock)
    with pytest.raises(InvalidToken, match="unknown kid 'old'"):
        after.verify(old_token)
    assert after.verify(new_token).sub == "42"


def test_other_services_verify_with_the_jwks() -> None:
    codec = make_codec(KeyRing("EdDSA", [ed_key("k1", SIGNER)], None), time.time)
    token, _ = issue(codec)
    (jwk,) = codec.keyring.jwks()["keys"]
    body = jwt.decode(token, jwt.PyJWK(jwk), algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    assert body["sub"] == "42"


PUBLIC_PEM = SIGNER.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
PUBLIC_RAW = SIGNER.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)
FOREIGN = Ed25519PrivateKey.generate()
FOREIGN_RAW = FOREIGN.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)
EMBEDDED_JWK = {"kty": "OKP", "crv": "Ed25519", "x": b64(FOREIGN_RAW)}


def _tampered(token: str) -> str:
    head, _, signature = token.split(".")
    body = b64(json.dumps(payload(roles=["admin"], perms=["*"])).encode())
    return f"{head}.{body}.{signature}"


def attack(name: str, forge: Callable[[], str], reason: str) -> Any:
    return pytest.param(forge, reason, id=name)


# Each attack names the check that must catch it, so a token refused for an incidental reason
# (say, a broken test helper) cannot pass for a defended attack.
ATTACKS = [
    attack(
        "alg none, no signature",
        lambda: assemble(header(alg="none"), payload(), lambda _: b""),
        "compact",
    ),
    attack(
        "alg none, junk signature",
        lambda: assemble(header(alg="none"), payload(), lambda _: b"x"),
        "algorithm 'none' is not allowed",
    ),
    attack("alg missing", lambda: signed(header(alg=...)), "algorithm None"),
    attack(
        "HS256 signed with the public key PEM",
        lambda: assemble(header(alg="HS256"), payload(), hs256(PUBLIC_PEM)),
        "algorithm 'HS256' is not allowed",
    ),
    attack(
        "HS256 signed with the raw public key",
        lambda: assemble(header(alg="HS256"), payload(), hs256(PUBLIC_RAW)),
        "algorithm 'HS256' is not allowed",
    ),
    attack("unknown kid", lambda: signed(header(kid="k2")), "unknown kid 'k2'"),
    attack("missing kid", lambda: signed(header(kid=...)), "unknown kid None"),
    attack("kid not a string", lambda: signed(header(kid=["k1"])), "Key ID"),
    attack("jku header", lambda: signed(header(jku="https://evil.example/jwks")), "jku"),
    attack("x5u header", lambda: signed(header(x5u="https://evil.example/c.pem")), "x5u"),
    attack(
        "jwk header carrying the signer's own key",
        lambda: signed(header(jwk=EMBEDDED_JWK), key=FOREIGN),
        "forbidden header.*jwk",
    ),
    attack("x5c header", lambda: signed(header(x5c=["MIIB"])), "forbidden header.*x5c"),
    attack("crit header", lambda: signed(header(crit=["b64"], b64=True)), "forbidden.*crit"),
    attack("missing exp", lambda: signed(body=payload(exp=...)), '"exp" claim'),
    attack("expired", lambda: signed(body=payload(iat=T0 - 700, exp=T0 - 10)), "expired"),
    attack("exp a string", lambda: signed(body=payload(exp=str(T0 + 600))), "integers"),
    attack("exp before iat", lambda: signed(body=payload(exp=T0 - 5)), "exp is not after iat"),
    attack("future nbf", lambda: signed(body=payload(nbf=T0 + 60)), "not valid yet"),
    attack("future iat", lambda: signed(body=payload(iat=T0 + 60, exp=T0 + 660)), "not valid yet"),
    attack("wrong iss", lambda: signed(body=payload(iss="https://evil.example")), "issuer"),
    attack("wrong aud", lambda: signed(body=payload(aud="another-api")), "Audience"),
    attack("missing iss", lambda: signed(body=payload(iss=...)), '"iss" claim'),
    attack("missing aud", lambda: signed(body=payload(aud=...)), '"aud" claim'),
    attack("missing jti", lambda: signed(body=payload(jti=...)), '"jti" claim'),
    attack("missing sub", lambda: signed(body=payload(sub=...)), '"sub" claim'),
    attack("missing iat", lambda: signed(body=payload(iat=...)), '"iat" claim'),
    attack("missing sid", lambda: signed(body=payload(sid=...)), "sid"),
    attack("sub not a string", lambda: signed(body=payload(sub=42)), "Subject must be a string"),
    attack("empty sub", lambda: signed(body=payload(sub="")), "non-empty"),
    *(
        attack(f"sub {sub!r}", partial(signed, body=payload(sub=sub)), "not a user id")
        for sub in ("abc", "1" * 40, " 1", "1_0", "+1", "01", "-1", "0", "9223372036854775808")
    ),
    attack("roles a string", lambda: signed(body=payload(roles="admin")), "lists of strings"),
    attack("perms not strings", lambda: signed(body=payload(perms=["a", 1])), "lists of strings"),
    attack("missing perms", lambda: signed(body=payload(perms=...)), "lists of strings"),
    attack("typ JWT (refresh-like)", lambda: signed(header(typ="JWT")), "typ 'JWT'"),
    attack("typ missing", lambda: signed(header(typ=...)), "typ None"),
    attack("typ rt+jwt", lambda: signed(header(typ="rt+jwt")), r"typ 'rt\+jwt'"),
    attack("payload tampered", lambda: _tampered(signed()), "Signature verification failed"),
    attack("foreign key, known kid", lambda: signed(key=FOREIGN), "Signature verification"),
    attack("padded spelling of a valid token", lambda: signed() + "==", "compact JWS"),
    attack("five segments", lambda: signed() + ".e30.e30", "compact JWS"),
    attack("empty", lambda: "", "compact JWS"),
    attack("too long", lambda: signed(body=payload(roles=["r" * 10_000])), "compact JWS"),
]


@pytest.mark.parametrize(("forge", "reason"), ATTACKS)
def test_attack_is_rejected(codec: AccessTokenCodec, forge: Callable[[], str], reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        codec.verify(forge())
    assert codec.cache_len() == 0
    assert codec.cache_len() == 0


def test_leeway_accepts_a_token_just_expired(codec: AccessTokenCodec, clock: Clock) -> None:
    token = signed()
    clock.now = T0 + 600 + 9
    assert codec.verify(token).exp == T0 + 600
    codec.forget(token)
    clock.now = T0 + 600 + 10
    with pytest.raises(InvalidToken, match="expired"):
        codec.verify(token)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_both_spellings_of_typ_are_accepted(codec: AccessTokenCodec, typ: str) -> None:
    assert codec.verify(signed(header(typ=typ))).sub == "42"


def test_hs256_ring_refuses_other_algorithms(clock: Clock) -> None:
    codec = make_codec(KeyRing("HS256", [SigningKey("s1", "HS256", SECRET, SECRET)], None), clock)
    hs_header = header(alg="HS256", kid="s1")
    assert codec.verify(assemble(hs_header, payload(), hs256(SECRET))).sub == "42"
    sha512 = assemble(
        header(alg="HS512", kid="s1"),
        payload(),
        lambda data: hmac.new(SECRET, data, hashlib.sha512).digest(),
    )
    with pytest.raises(InvalidToken, match="algorithm 'HS512' is not allowed"):
        codec.verify(sha512)
    with pytest.raises(InvalidToken, match="algorithm 'EdDSA' is not allowed"):
        codec.verify(signed(header(kid="s1")))


def test_a_second_verify_is_a_lookup(codec: AccessTokenCodec, decodes: list[str]) -> None:
    token, _ = issue(codec)
    first = codec.verify(token)
    second = codec.verify(token)
    assert second is first
    assert decodes == [token]
    codec.forget(token)
    codec.verify(token)
    assert decodes == [token, token]


def test_a_cached_token_expires(codec: AccessTokenCodec, clock: Clock, decodes: list[str]) -> None:
    token, claims = issue(codec)
    codec.verify(token)
    clock.now = claims.exp + 9
    assert codec.verify(token) is not None
    assert decodes == [token]
    clock.now = claims.exp + 10
    with pytest.raises(InvalidToken, match="expired"):
        codec.verify(token)
    assert codec.cache_len() == 0
    with pytest.raises(InvalidToken, match="expired"):
        codec.verify(token)
    assert decodes == [token, token]


def test_the_cache_stays_bounded(clock: Clock, decodes: list[str]) -> None:
    codec = make_codec(KeyRing("EdDSA", [ed_key("k1", SIGNER)], None), clock, cache_size=50)
    sizes = []
    for _ in range(150):
        token, _ = issue(codec)
        codec.verify(token)
        sizes.append(codec.cache_len())
    assert max(sizes) == 50
    assert min(sizes[50:]) >= 25
    codec.verify(token)
    assert len(decodes) == 150  # the newest token is still cached


def test_a_full_cache_drops_expired_tokens_before_live_ones(
    clock: Clock, decodes: list[str]
) -> None:
    codec = make_codec(KeyRing("EdDSA", [ed_key("k1", SIGNER)], None), clock, cache_size=10)
    early = [issue(codec)[0] for _ in range(5)]
    for token in early:
        codec.verify(token)
    clock.now = T0 + 300
    late = [issue(codec)[0] for _ in range(5)]
    for token in late:
        codec.verify(token)
    clock.now = T0 + 700  # the early tokens expired, the late ones have 200 s left
    codec.verify(issue(codec)[0])
    assert codec.cache_len() == 6
    checks = len(decodes)
    for token in late:
        codec.verify(token)
    assert len(decodes) == checks


def test_equal_role_sets_are_shared_and_different_ones_kept_apart(
    codec: AccessTokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = codec.verify(issue(codec)[0])
    second = codec.verify(issue(codec)[0])
    assert first.roles is second.roles
    assert first.permissions is second.permissions
    monkeypatch.setattr(tokens, "_MAX_SHARED", 2)
    for n in range(5):
        role_sets = [f"role-{n}"], [f"perm-{n}", "orders:read"]
        claims = codec.verify(issue(codec, roles=role_sets[0], permissions=role_sets[1])[0])
        assert claims.roles == (f"role-{n}",)
        assert claims.permissions == frozenset({f"perm-{n}", "orders:read"})


def test_rejections_are_not_cached(codec: AccessTokenCodec, decodes: list[str]) -> None:
    token = signed(key=FOREIGN)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            codec.verify(token)
    assert decodes == [token, token]


def test_issue_refuses_a_bare_string_for_roles(codec: AccessTokenCodec) -> None:
    with pytest.raises(TypeError):
        issue(codec, roles="admin")
    with pytest.raises(ValueError, match="sid"):
        issue(codec, sid="")
    with pytest.raises(ValueError, match="user id"):
        issue(codec, sub="01")


@pytest.mark.parametrize(
    "options", [{"leeway": 31}, {"leeway": -1}, {"lifetime": 0}, {"cache_size": 0}]
)
def test_bad_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        make_codec(KeyRing("EdDSA", [ed_key("k1", SIGNER)], None), time.time, **options)


MUTATION_CODEC = make_codec(KeyRing("EdDSA", [ed_key("k1", SIGNER)], None), Clock(T0))
VALID = issue(MUTATION_CODEC)[0]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= %\x00é"


@given(
    position=st.integers(min_value=0, max_value=len(VALID)),
    operation=st.sampled_from(["replace", "insert", "delete"]),
    text=st.text(alphabet=ALPHABET, min_size=1, max_size=3),
)
def test_mutations_of_a_valid_token_never_verify(position: int, operation: str, text: str) -> None:
    if operation == "replace":
        mutated = VALID[:position] + text + VALID[position + len(text) :]
    elif operation == "insert":
        mutated = VALID[:position] + text + VALID[position:]
    else:
        mutated = VALID[:position] + VALID[position + len(text) :]
    assume(mutated != VALID)
    assert MUTATION_CODEC.verify(VALID).sub == "42"  # warm: the cache must not leak to a mutant
    with pytest.raises(InvalidToken):
        MUTATION_CODEC.verify(mutated)


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_with_invalid_token(text: str) -> None:
    with pytest.raises(InvalidToken):
        MUTATION_CODEC.verify(text)
