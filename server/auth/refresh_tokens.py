"""Opaque refresh tokens: 256 random bits, SHA-256 at rest, successors sealed for the grace window.

A rotated token keeps its successor encrypted (AES-256-GCM under a key derived from the secret
key) for a few seconds, so a concurrent or retried refresh with the old token receives the very
same successor instead of forking the family. The plaintext never reaches the database.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


class SuccessorSeal:
    def __init__(self, secret_key: str) -> None:
        key = hashlib.sha256(b"hotpath refresh successor seal\0" + secret_key.encode()).digest()
        self._aead = AESGCM(key)

    def seal(self, successor: str, predecessor_hash: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        # Bound to the predecessor: a sealed successor copied to another row will not open.
        return nonce + self._aead.encrypt(nonce, successor.encode(), predecessor_hash)

    def open(self, sealed: bytes, predecessor_hash: bytes) -> str:
        return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], predecessor_hash).decode()
