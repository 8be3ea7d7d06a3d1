"""Text kept in the database that only hotpath may read back: AES-256-GCM under a key derived
(HKDF-SHA256) from HOTPATH_SECRET_KEY, one key per purpose, a fresh 96-bit nonce per seal,
stored as nonce || ciphertext. Changing HOTPATH_SECRET_KEY makes what was sealed unreadable
(``open`` raises cryptography's InvalidTag)."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class Sealer:
    def __init__(self, secret_key: str, *, info: bytes, aad: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)
        self._aad = aad

    def seal(self, text: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, text.encode(), self._aad)

    def open(self, sealed: bytes) -> str:
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        return self._aead.decrypt(nonce, ciphertext, self._aad).decode()
