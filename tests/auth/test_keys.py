from __future__ import annotations

import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from server.auth.keys import (
    Algorithm,
    KeyRing,
    KeyRingError,
    SigningKey,
    ensure_dev_key,
    generate_dev_key,
    load_keyring,
)
from server.auth.setup import load_keys
from server.runtime.settings import Settings
from tests.fixtures.support import at_once_in_processes

SECRET = "hs256-secret-" + "x" * 40


def write_private(directory: Path, kid: str, mode: int = 0o600) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = directory / f"{kid}.pem"
    path.write_bytes(pem)
    path.chmod(mode)
    return key


def write_public(directory: Path, kid: str, key: Ed25519PublicKey) -> None:
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = directory / f"{kid}.pub.pem"
    path.write_bytes(pem)
    path.chmod(0o644)


def write_secret(directory: Path, kid: str, secret: str = SECRET, mode: int = 0o600) -> None:
    path = directory / f"{kid}.key"
    path.write_text(secret + "\n")
    path.chmod(mode)


def raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_two_private_keys_with_an_active_kid(tmp_path: Path) -> None:
    first = write_private(tmp_path, "2024-a")
    second = write_private(tmp_path, "2024-b")
    ring = load_keyring(tmp_path, algorithm="EdDSA", active_kid="2024-b")
    assert ring.algorithm == "EdDSA"
    assert ring.active.kid == "2024-b"
    assert set(ring.by_kid) == {"2024-a", "2024-b"}
    assert raw(ring.active.public) == raw(second.public_key())
    assert raw(ring.by_kid["2024-a"].public) == raw(first.public_key())
    assert ring.verification_key("2024-a") is ring.by_kid["2024-a"].public
    assert ring.verification_key("2024-c") is None


def test_a_single_private_key_is_the_signer_without_configuration(tmp_path: Path) -> None:
    write_private(tmp_path, "only")
    write_public(tmp_path, "retired", Ed25519PrivateKey.generate().public_key())
    ring = load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)
    assert ring.active.kid == "only"
    assert ring.by_kid["retired"].private is None
    assert isinstance(ring.verification_key("retired"), Ed25519PublicKey)


def test_ambiguous_signer_asks_for_the_active_kid(tmp_path: Path) -> None:
    write_private(tmp_path, "a")
    write_private(tmp_path, "b")
    with pytest.raises(KeyRingError, match="HOTPATH_JWT_ACTIVE_KID"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_no_private_key_cannot_sign(tmp_path: Path) -> None:
    write_public(tmp_path, "old", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(KeyRingError, match="exactly one private key"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_active_kid_must_exist_and_be_able_to_sign(tmp_path: Path) -> None:
    write_private(tmp_path, "new")
    write_public(tmp_path, "old", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(KeyRingError, match="'missing' is not in the key ring"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid="missing")
    with pytest.raises(KeyRingError, match="'old' has no private key"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid="old")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_private_keys_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    write_private(tmp_path, "k1", mode=mode)
    with pytest.raises(KeyRingError, match="chmod 600"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_hs256_secrets_readable_by_others_are_refused(tmp_path: Path) -> None:
    write_secret(tmp_path, "k1", mode=0o644)
    with pytest.raises(KeyRingError, match="group or others"):
        load_keyring(tmp_path, algorithm="HS256", active_kid=None)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    write_private(tmp_path, "k1", mode=0o400)
    assert load_keyring(tmp_path, algorithm="EdDSA", active_kid=None).active.kid == "k1"


@pytest.mark.parametrize("name", ["bad.kid", "with space", "x" * 65, "ümlaut"])
def test_bad_kid_names_are_refused(tmp_path: Path, name: str) -> None:
    write_private(tmp_path, name)
    with pytest.raises(KeyRingError, match="must match"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_a_kid_of_64_characters_is_fine(tmp_path: Path) -> None:
    write_private(tmp_path, "k" * 64)
    assert load_keyring(tmp_path, algorithm="EdDSA", active_kid=None).active.kid == "k" * 64


def test_a_kid_with_both_a_private_and_a_public_file_is_ambiguous(tmp_path: Path) -> None:
    key = write_private(tmp_path, "k1")
    write_public(tmp_path, "k1", key.public_key())
    with pytest.raises(KeyRingError, match="both hold key 'k1'"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_unrelated_and_hidden_entries_are_ignored(tmp_path: Path) -> None:
    write_private(tmp_path, "k1")
    (tmp_path / "README").write_text("keys live here")
    (tmp_path / "..data").mkdir()
    (tmp_path / ".hidden.pem").write_text("not a key")
    assert set(load_keyring(tmp_path, algorithm="EdDSA", active_kid=None).by_kid) == {"k1"}


def test_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "k1.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(KeyRingError, match="not an Ed25519 key"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_garbage_and_encrypted_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "k1.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(KeyRingError, match=r"k1\.pem: not an unencrypted PKCS8"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(KeyRingError, match="not an unencrypted PKCS8"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="does not exist"):
        load_keyring(tmp_path / "nope", algorithm="EdDSA", active_kid=None)
    write_secret(tmp_path, "k1")  # an HS256 secret is not an EdDSA key
    with pytest.raises(KeyRingError, match=r"no EdDSA keys .*<kid>\.pem"):
        load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)


def test_hs256_directory(tmp_path: Path) -> None:
    write_secret(tmp_path, "s1")
    write_secret(tmp_path, "s2", secret="another-" + "y" * 30)
    ring = load_keyring(tmp_path, algorithm="HS256", active_kid="s2")
    assert ring.algorithm == "HS256"
    assert ring.active.kid == "s2"
    assert ring.active.private == ring.active.public == ("another-" + "y" * 30).encode()
    assert ring.verification_key("s1") == SECRET.encode()
    assert ring.jwks() == {"keys": []}


def test_short_hs256_secret_is_refused(tmp_path: Path) -> None:
    write_secret(tmp_path, "s1", secret="y" * 31)
    with pytest.raises(KeyRingError, match="at least 32 characters"):
        load_keyring(tmp_path, algorithm="HS256", active_kid=None)


def test_secrets_never_appear_in_a_repr(tmp_path: Path) -> None:
    write_secret(tmp_path, "s1")
    ring = load_keyring(tmp_path, algorithm="HS256", active_kid=None)
    assert SECRET not in repr(ring.active)
    assert "s1" in repr(ring.active)


def test_jwks_publishes_every_public_key_and_nothing_private(tmp_path: Path) -> None:
    signer = write_private(tmp_path, "new")
    retired = Ed25519PrivateKey.generate().public_key()
    write_public(tmp_path, "old", retired)
    jwks = load_keyring(tmp_path, algorithm="EdDSA", active_kid="new").jwks()
    by_kid = {jwk["kid"]: jwk for jwk in jwks["keys"]}
    assert set(by_kid) == {"new", "old"}
    for jwk in by_kid.values():
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        assert "=" not in jwk["x"]
    for kid, expected in [("new", signer.public_key()), ("old", retired)]:
        loaded = OKPAlgorithm.from_jwk(by_kid[kid])
        assert isinstance(loaded, Ed25519PublicKey)
        assert raw(loaded) == raw(expected)
    assert jwt.PyJWK(by_kid["new"]).algorithm_name == "EdDSA"


def test_jwks_copies_cannot_change_the_ring(tmp_path: Path) -> None:
    write_private(tmp_path, "k1")
    ring = load_keyring(tmp_path, algorithm="EdDSA", active_kid=None)
    ring.jwks()["keys"][0]["x"] = "tampered"
    assert ring.jwks()["keys"][0]["x"] != "tampered"


@pytest.mark.parametrize("algorithm", ["EdDSA", "HS256"])
def test_generate_dev_key(tmp_path: Path, algorithm: Algorithm) -> None:
    directory = tmp_path / "keys"
    kid = generate_dev_key(directory, algorithm)
    assert kid.startswith("dev-")
    (path,) = directory.iterdir()
    assert path.name == kid + (".pem" if algorithm == "EdDSA" else ".key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = load_keyring(directory, algorithm=algorithm, active_kid=None)
    assert ring.active.kid == kid
    assert generate_dev_key(directory, algorithm) != kid


def test_generate_dev_key_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        generate_dev_key(tmp_path, "EdDSA")
    finally:
        os.umask(previous)
    (path,) = tmp_path.iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_ring_refuses_keys_of_another_algorithm() -> None:
    secret = SECRET.encode()
    with pytest.raises(KeyRingError, match="is HS256, the ring is EdDSA"):
        KeyRing("EdDSA", [SigningKey("k1", "HS256", secret, secret)], None)
    with pytest.raises(KeyRingError, match="unsupported algorithm"):
        KeyRing("RS256", [], None)


@pytest.mark.parametrize("round_", range(3))  # each round is a fresh race
def test_processes_starting_at_once_on_an_empty_directory_make_one_key(
    tmp_path: Path, round_: int
) -> None:
    """What the granian workers of a fresh install do: each builds the app, which loads keys."""
    settings = Settings(env="test", data_dir=tmp_path)
    loaded = set(at_once_in_processes(lambda: load_keys(settings).active.kid))
    assert len(loaded) == 1
    files = sorted(path.name for path in (tmp_path / "jwt").iterdir())
    # The lock file is hidden, so the loader never reads it; no partial file is left behind.
    assert files == [".generate.lock", f"{loaded.pop()}.pem"]


def test_a_directory_holding_only_hidden_entries_gets_one_key(tmp_path: Path) -> None:
    (tmp_path / ".gitkeep").touch()
    ensure_dev_key(tmp_path, "EdDSA")
    ensure_dev_key(tmp_path, "EdDSA")
    (key,) = [path for path in tmp_path.iterdir() if not path.name.startswith(".")]
    assert load_keyring(tmp_path, algorithm="EdDSA", active_kid=None).active.kid == key.stem


def test_a_directory_with_other_files_gets_no_key(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("the keys are elsewhere")
    ensure_dev_key(tmp_path, "EdDSA")
    assert [path.name for path in tmp_path.iterdir()] == ["README"]
