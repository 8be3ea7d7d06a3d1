"""The API key format: ``hp_<id>_<secret><checksum>``.

A fixed prefix and a checksum let secret scanners recognise a leaked key, and let the server
refuse a mistyped one without a database lookup (as GitHub's token format does). ``id`` is
public (12 base62 characters) and names the key in URLs and logs; ``secret`` is 32 base62
characters (~190 bits); ``checksum`` is the CRC32 of everything before it, 6 base62 characters.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "hp_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_LENGTH = 12
_SECRET_LENGTH = 32
_CHECKSUM_LENGTH = 6
_SHAPE = re.compile(
    rf"hp_([0-9A-Za-z]{{{_ID_LENGTH}}})_([0-9A-Za-z]{{{_SECRET_LENGTH}}})"
    rf"([0-9A-Za-z]{{{_CHECKSUM_LENGTH}}})"
)


class MalformedKey(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    token: str


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(_CHECKSUM_LENGTH):
        value, digit = divmod(value, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def new_key_id() -> str:
    return _random(_ID_LENGTH)


def new_key(key_id: str) -> str:
    body = f"{PREFIX}{key_id}_{_random(_SECRET_LENGTH)}"
    return body + _checksum(body)


def parse(token: str) -> ParsedKey:
    """Shape and checksum only: no lookup happens for a key that fails here."""
    match = _SHAPE.fullmatch(token)
    if match is None:
        raise MalformedKey("not an hp_ API key")
    body = token[:-_CHECKSUM_LENGTH]
    if not secrets.compare_digest(_checksum(body), match.group(3)):
        raise MalformedKey("checksum mismatch")
    return ParsedKey(match.group(1), token)


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)
