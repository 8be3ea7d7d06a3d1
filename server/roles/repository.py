"""Roles and the permissions they grant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from server.db.database import Connection
from server.db.sqlfiles import Queries
from server.web.errors import Conflict


class RoleExists(Conflict):
    slug = "role-exists"
    title = "Role already exists"


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    permissions: tuple[str, ...]
    created_at: dt.datetime
    updated_at: dt.datetime


def _role(record: asyncpg.Record) -> Role:
    return Role(
        record["name"],
        record["description"],
        tuple(record["permissions"]),
        record["created_at"],
        record["updated_at"],
    )


class RolesRepository:
    def __init__(self, queries: Queries) -> None:
        self._list = queries.sql("list_roles")
        self._get = queries.sql("get_role")
        self._lock = queries.sql("get_role_for_update")
        self._permissions = queries.sql("list_permissions_for_roles")
        self._create = queries.sql("create_role")
        self._update = queries.sql("update_role_permissions")

    async def all(self, conn: Connection) -> list[Role]:
        return [_role(r) for r in await conn.fetch(self._list)]

    async def get(self, conn: Connection, name: str, *, for_update: bool = False) -> Role | None:
        record = await conn.fetchrow(self._lock if for_update else self._get, name)
        return None if record is None else _role(record)

    async def permissions(self, conn: Connection, roles: Iterable[str]) -> frozenset[str]:
        records = await conn.fetch(self._permissions, list(roles))
        return frozenset(r["permission"] for r in records)

    async def create(
        self, conn: Connection, name: str, description: str, permissions: Iterable[str]
    ) -> Role:
        try:
            record = await conn.fetchrow(self._create, name, description, sorted(permissions))
        except asyncpg.UniqueViolationError as exc:
            # The primary key (migrations/0003_identity.sql names it by default).
            if exc.constraint_name == "roles_pkey":
                raise RoleExists(f"A role named {name!r} already exists.") from None
            raise
        assert record is not None
        return _role(record)

    async def set_permissions(
        self, conn: Connection, name: str, permissions: Iterable[str], description: str | None
    ) -> Role | None:
        record = await conn.fetchrow(self._update, name, sorted(permissions), description)
        return None if record is None else _role(record)
