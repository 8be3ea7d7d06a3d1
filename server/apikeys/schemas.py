"""Shapes of the API key endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from server.apikeys.repository import ApiKey
from server.auth.permissions import KNOWN_PERMISSIONS
from server.web.instants import Instant, check_storable
from server.web.schemas import DEFAULT_LIMIT, PageLimit, Strict

# A scope is a permission its owner holds (the service refuses others with a 422), and roles
# hold only KNOWN_PERMISSIONS: the enum documents that set.
Scope = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z_]+:[a-z_]+$",
        max_length=64,
        extra_json_schema={"enum": sorted(KNOWN_PERMISSIONS)},
    ),
]


class NewKeyBody(Strict):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    expires_at: Instant | None = None
    rate_tier: Literal["standard", "high"] = "standard"

    def __post_init__(self) -> None:
        check_storable(expires_at=self.expires_at)


class KeyQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None
    user_id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None
    all: bool = False


class KeyView(msgspec.Struct):
    id: str
    user_id: int
    name: str
    scopes: list[str]
    rate_tier: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    rotated_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    request_count: int


class IssuedKeyView(KeyView):
    """Only in the answer to create and rotate: the secret is never shown again."""

    key: str
    previous_key_valid_until: dt.datetime | None = None


class KeyList(msgspec.Struct):
    data: list[KeyView]
    next_cursor: str | None


def key_view(key: ApiKey) -> KeyView:
    return KeyView(
        id=key.id,
        user_id=key.user_id,
        name=key.name,
        scopes=list(key.scopes),
        rate_tier=key.rate_tier,
        created_at=key.created_at,
        expires_at=key.expires_at,
        rotated_at=key.rotated_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
        request_count=key.request_count,
    )


def issued_view(key: ApiKey, secret: str) -> IssuedKeyView:
    fields = msgspec.structs.asdict(key_view(key))
    return IssuedKeyView(**fields, key=secret, previous_key_valid_until=key.previous_valid_until)
