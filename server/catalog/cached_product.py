"""What the product cache holds: a product's version, ETag and response body, and how it is
written to Redis (``version``, ``etag`` and ``body`` on three lines; a tombstone is the bare
version)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachedProduct:
    version: int
    etag: str
    body: bytes  # the JSON the handler sends as is


Loader = Callable[[], Awaitable[CachedProduct | None]]


def encode(product: CachedProduct) -> str:
    return f"{product.version}\n{product.etag}\n{product.body.decode()}"


def decode(raw: str) -> CachedProduct | None:
    """None for a tombstone (a bare version)."""
    version, sep, rest = raw.partition("\n")
    if not sep:
        return None
    etag, _, body = rest.partition("\n")
    return CachedProduct(int(version), etag, body.encode())


def stored_version(raw: str) -> int:
    """The version a stored value (a product or a tombstone) carries."""
    return int(raw.partition("\n")[0])
