"""Strong ETags and the If-None-Match / If-Match preconditions (RFC 9110 section 13)."""

from __future__ import annotations

from middleware.compression import CODING_SUFFIXES
from server.web.errors import PreconditionFailed, PreconditionRequired


def etag(kind: str, resource_id: int, version: int) -> str:
    """Strong: the version changes with every change to the representation."""
    return f'"{kind}{resource_id}v{version}"'


def _decoded(tag: str) -> str:
    """The tag of the identity representation: compression adds its coding to a strong tag
    (``"p1v3-gzip"``), and a client may send back what it read compressed."""
    for suffix in CODING_SUFFIXES:
        if tag.endswith(suffix):
            return tag[: -len(suffix)] + '"'
    return tag


def _tags(header: str) -> list[str]:
    return [_decoded(part.strip().removeprefix("W/")) for part in header.split(",") if part.strip()]


def not_modified(if_none_match: str | None, current: str) -> bool:
    if not if_none_match:
        return False
    tags = _tags(if_none_match)
    return "*" in tags or current in tags


def required_versions(if_match: str | None, kind: str, resource_id: int) -> frozenset[int] | None:
    """The versions the client accepts (any listed tag may match), or None for ``*``, which
    matches whatever version is current (RFC 9110 13.1.1); 428 without If-Match, 412 when no
    tag names this resource. Weak tags never match (strong comparison).

    A resource that is missing or deleted answers 404 whatever the header says: RFC 9110
    13.2.1 has preconditions ignored when the request would fail without them.
    """
    if not if_match:
        raise PreconditionRequired("Send If-Match with the ETag you last read.")
    if if_match.strip() == "*":
        return None
    prefix = f'"{kind}{resource_id}v'
    versions = set()
    for raw in if_match.split(","):
        tag = _decoded(raw.strip())
        if tag.startswith(prefix) and tag.endswith('"'):
            digits = tag[len(prefix) : -1]
            if digits.isascii() and digits.isdigit() and len(digits) <= 9:
                versions.add(int(digits))
    if not versions:
        raise PreconditionFailed("The If-Match ETag does not name this resource's version.")
    return frozenset(versions)
