"""Standard Webhooks secrets and signatures, and the secrets' encryption at rest.

A secret is ``whsec_`` + base64 of 32 random bytes; the signing key is those bytes. A
signature is ``v1,`` + base64(HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")).

The worker needs the raw secret to sign, so it cannot be stored as a hash: it is sealed with
AES-256-GCM under a key derived (HKDF-SHA256) from HOTPATH_SECRET_KEY, a fresh 96-bit nonce per
seal, stored as nonce || ciphertext. Changing HOTPATH_SECRET_KEY makes the stored secrets
unreadable: rotate every endpoint's secret after such a change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from server.runtime.sealing import Sealer

PREFIX = "whsec_"
_SECRET_BYTES = 32
_AAD = b"hotpath webhook signing secret"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Every valid secret's signature, space-separated (two during a rotation's grace)."""
    return " ".join(signature(s, msg_id, timestamp, body) for s in secrets_)


class SecretBox(Sealer):
    """Seals and opens endpoint secrets (AES-GCM, key derived from HOTPATH_SECRET_KEY)."""

    def __init__(self, secret_key: str) -> None:
        super().__init__(secret_key, info=b"hotpath webhook secrets", aad=_AAD)
