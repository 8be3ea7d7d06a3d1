"""API keys in PostgreSQL: the stored key (never its secret) and what verification needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from server.db.database import Connection
from server.db.sqlfiles import Queries


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user_id: int
    name: str
    scopes: tuple[str, ...]
    rate_tier: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    rotated_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    request_count: int
    previous_valid_until: dt.datetime | None


@dataclass(frozen=True, slots=True)
class KeyCredentials:
    id: str
    user_id: int
    scopes: frozenset[str]
    rate_tier: str
    secret_hash: bytes
    previous_secret_hash: bytes | None
    previous_valid_until: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    owner_active: bool
    owner_roles: tuple[str, ...]
    owner_permissions: frozenset[str]


def _key(record: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=record["id"],
        user_id=record["user_id"],
        name=record["name"],
        scopes=tuple(record["scopes"]),
        rate_tier=record["rate_tier"],
        created_at=record["created_at"],
        expires_at=record["expires_at"],
        rotated_at=record["rotated_at"],
        revoked_at=record["revoked_at"],
        last_used_at=record["last_used_at"],
        request_count=record["request_count"],
        previous_valid_until=record["previous_valid_until"],
    )


class ApiKeysRepository:
    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._create = q("create_api_key")
        self._get = q("get_api_key")
        self._credentials = q("get_api_key_credentials")
        self._list = q("list_api_keys")
        self._revoke = q("update_api_key_revoked")
        self._rotate = q("update_api_key_secret")
        self._usage = q("update_api_key_usage")

    async def create(
        self,
        conn: Connection,
        *,
        key_id: str,
        user_id: int,
        name: str,
        scopes: Sequence[str],
        rate_tier: str,
        secret_hash: bytes,
        expires_at: dt.datetime | None,
    ) -> ApiKey:
        record = await conn.fetchrow(
            self._create, key_id, user_id, name, list(scopes), rate_tier, secret_hash, expires_at
        )
        assert record is not None
        return _key(record)

    async def get(self, conn: Connection, key_id: str) -> ApiKey | None:
        record = await conn.fetchrow(self._get, key_id)
        return None if record is None else _key(record)

    async def credentials(self, conn: Connection, key_id: str) -> KeyCredentials | None:
        r = await conn.fetchrow(self._credentials, key_id)
        if r is None:
            return None
        return KeyCredentials(
            id=r["id"],
            user_id=r["user_id"],
            scopes=frozenset(r["scopes"]),
            rate_tier=r["rate_tier"],
            secret_hash=r["secret_hash"],
            previous_secret_hash=r["previous_secret_hash"],
            previous_valid_until=r["previous_valid_until"],
            expires_at=r["expires_at"],
            revoked_at=r["revoked_at"],
            owner_active=r["owner_status"] == "active",
            owner_roles=tuple(r["owner_roles"]),
            owner_permissions=frozenset(r["owner_permissions"]),
        )

    async def page(
        self,
        conn: Connection,
        *,
        owner: int | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[ApiKey]:
        created, last_id = after if after else (None, None)
        return [_key(r) for r in await conn.fetch(self._list, owner, created, last_id, limit)]

    async def revoke(self, conn: Connection, key_id: str) -> bool:
        return await conn.fetchval(self._revoke, key_id) is not None

    async def rotate(
        self, conn: Connection, key_id: str, secret_hash: bytes, old_valid_until: dt.datetime
    ) -> ApiKey | None:
        record = await conn.fetchrow(self._rotate, key_id, secret_hash, old_valid_until)
        return None if record is None else _key(record)

    async def record_usage(
        self,
        conn: Connection,
        ids: Sequence[str],
        counts: Sequence[int],
        used_at: Sequence[dt.datetime],
    ) -> None:
        await conn.execute(self._usage, list(ids), list(counts), list(used_at))
