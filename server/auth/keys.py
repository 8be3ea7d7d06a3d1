"""Access-token signing keys: a ring of ``kid -> key`` read from one directory.

EdDSA: ``<kid>.pem`` holds a PKCS8 Ed25519 private key (it can sign), ``<kid>.pub.pem`` a public
key that only verifies, so tokens signed before a rotation stay valid until they expire.
HS256: ``<kid>.key`` holds a secret of at least 32 characters. One key is the active signer.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.runtime.files import write_new

Algorithm = Literal["EdDSA", "HS256"]
ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "HS256")
MIN_SECRET_LENGTH = 32
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUFFIXES: dict[str, tuple[str, ...]] = {"EdDSA": (".pub.pem", ".pem"), "HS256": (".key",)}
# Hidden, so load_keyring never reads it.
_GENERATE_LOCK = ".generate.lock"


class KeyRingError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key; ``private`` is None for a key that only verifies. HS256 uses the secret as both."""

    kid: str
    algorithm: str
    private: Any | None = field(repr=False)
    public: Any = field(repr=False)


class KeyRing:
    """Every key that verifies, and the one that signs; built once, never changed."""

    def __init__(self, algorithm: str, keys: Iterable[SigningKey], active_kid: str | None) -> None:
        if algorithm not in ALGORITHMS:
            raise KeyRingError(f"unsupported algorithm {algorithm!r}; use EdDSA or HS256")
        by_kid: dict[str, SigningKey] = {}
        for key in keys:
            if key.algorithm != algorithm:
                raise KeyRingError(f"key {key.kid!r} is {key.algorithm}, the ring is {algorithm}")
            if key.kid in by_kid:
                raise KeyRingError(f"key id {key.kid!r} appears twice")
            by_kid[key.kid] = key
        signers = sorted(kid for kid, key in by_kid.items() if key.private is not None)
        if active_kid is None:
            if len(signers) != 1:
                found = ", ".join(signers) or "none"
                raise KeyRingError(
                    f"exactly one private key is needed to pick the signer (found: {found});"
                    " set HOTPATH_JWT_ACTIVE_KID"
                )
            active_kid = signers[0]
        active = by_kid.get(active_kid)
        if active is None:
            raise KeyRingError(f"the active key {active_kid!r} is not in the key ring")
        if active.private is None:
            raise KeyRingError(f"the active key {active_kid!r} has no private key; it cannot sign")
        self.algorithm = algorithm
        self.active = active
        self.by_kid: Mapping[str, SigningKey] = MappingProxyType(by_kid)
        self._jwks = [_jwk(key) for key in by_kid.values()] if algorithm == "EdDSA" else []

    def verification_key(self, kid: str) -> Any | None:
        key = self.by_kid.get(kid)
        return None if key is None else key.public

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys as a JWK Set; HS256 secrets are never published."""
        return {"keys": [dict(jwk) for jwk in self._jwks]}


def load_keyring(directory: Path, *, algorithm: Algorithm, active_kid: str | None) -> KeyRing:
    if algorithm not in ALGORITHMS:
        raise KeyRingError(f"unsupported algorithm {algorithm!r}; use EdDSA or HS256")
    if not directory.is_dir():
        raise KeyRingError(f"the key directory {directory} does not exist")
    keys = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        kid_and_suffix = _split(path.name, _SUFFIXES[algorithm])
        # Kubernetes secret volumes hold "..data" links and dot directories next to the files.
        if kid_and_suffix is None or path.name.startswith(".") or not path.is_file():
            continue
        kid, suffix = kid_and_suffix
        if not _KID.fullmatch(kid):
            raise KeyRingError(f"{path}: the key id {kid!r} must match [A-Za-z0-9_-]{{1,64}}")
        if kid in seen:
            raise KeyRingError(f"{seen[kid]} and {path} both hold key {kid!r}; keep one")
        seen[kid] = path
        if suffix == ".pub.pem":
            keys.append(SigningKey(kid, algorithm, None, _read_public(path)))
        elif suffix == ".pem":
            private = _read_private(path)
            keys.append(SigningKey(kid, algorithm, private, private.public_key()))
        else:
            secret = _read_secret(path)
            keys.append(SigningKey(kid, algorithm, secret, secret))
    if not keys:
        wanted = " or ".join(f"<kid>{suffix}" for suffix in _SUFFIXES[algorithm])
        raise KeyRingError(f"no {algorithm} keys in {directory} (expected {wanted} files)")
    return KeyRing(algorithm, keys, active_kid)


def ensure_dev_key(directory: Path, algorithm: Algorithm) -> None:
    """Generate a signing key unless ``directory`` already holds something (hidden names aside).

    Several processes may start at once on one directory (granian workers, replicas sharing a
    data directory): the check and the generation run under an exclusive lock on a file there,
    so exactly one key is made and every process loads it.
    """
    if _holds_anything(directory):
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(directory / _GENERATE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _holds_anything(directory):
            generate_dev_key(directory, algorithm)
    finally:
        os.close(lock)  # releases the lock


def generate_dev_key(directory: Path, algorithm: Algorithm) -> str:
    """Create a new signing key file (mode 0600) for development; return its kid."""
    if algorithm not in ALGORITHMS:
        raise KeyRingError(f"unsupported algorithm {algorithm!r}; use EdDSA or HS256")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    kid = f"dev-{secrets.token_hex(4)}"
    if algorithm == "EdDSA":
        content = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = directory / f"{kid}.pem"
    else:
        content = secrets.token_urlsafe(48).encode() + b"\n"
        path = directory / f"{kid}.key"
    write_new(path, content)
    return kid


def _holds_anything(directory: Path) -> bool:
    return directory.is_dir() and any(not p.name.startswith(".") for p in directory.iterdir())


def _split(name: str, suffixes: tuple[str, ...]) -> tuple[str, str] | None:
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


def _read_private_bytes(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyRingError(
            f"{path}: a private key must not be readable by group or others"
            f" (mode {mode:04o}); run chmod 600 {path}"
        )
    return path.read_bytes()


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_private_bytes(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyRingError(f"{path}: not an unencrypted PKCS8 PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyRingError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def _read_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyRingError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyRingError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def _read_secret(path: Path) -> bytes:
    try:
        secret = _read_private_bytes(path).decode().strip()
    except UnicodeDecodeError:
        raise KeyRingError(f"{path}: the secret must be UTF-8 text") from None
    if len(secret) < MIN_SECRET_LENGTH:
        raise KeyRingError(f"{path}: the secret must be at least {MIN_SECRET_LENGTH} characters")
    return secret.encode()


def _jwk(key: SigningKey) -> dict[str, str]:
    raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key.kid, "alg": "EdDSA", "use": "sig"}
