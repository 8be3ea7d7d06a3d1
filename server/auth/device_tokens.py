"""Known devices: a token each successful login hands out, which lets its holder past the
account-wide login block (OWASP's "device cookie").

Without it a stranger could keep an owner out: one wrong password each time the account's
block ends re-arms it, from any address. A login that presents a valid device token for the
account is counted against that device instead, so the stranger's failures block strangers
only. Tokens are ``dv1.<nonce>.<mac>``: the MAC binds the nonce to the account and to its
password hash as it is, so a token works for the account it was issued for and nothing else,
and every one of them stops working when the password changes (a reset, a change, a rehash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_PREFIX = "dv1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class DeviceTokens:
    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"hotpath device tokens\0" + secret_key.encode()).digest()

    def issue(self, account: str, stamp: str) -> str:
        """A new device token for ``account`` (the throttle's account key); ``stamp`` is the
        account's password hash now."""
        nonce = _b64(secrets.token_bytes(16))
        return f"{_PREFIX}.{nonce}.{self._mac(account, stamp, nonce)}"

    def device_key(self, token: str | None, account: str, stamp: str) -> str | None:
        """The throttle key of a valid token for ``account`` and its password ``stamp``, or
        None (absent, malformed, tampered with, for another account or an older password)."""
        if not token:
            return None
        prefix, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if prefix != _PREFIX or not nonce or not mac:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(account, stamp, nonce).encode()):
            return None
        return "device:" + nonce

    def _mac(self, account: str, stamp: str, nonce: str) -> str:
        message = f"{account}\0{stamp}\0{nonce}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest()[:16])
