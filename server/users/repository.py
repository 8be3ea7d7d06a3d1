"""Users storage: named queries in, frozen dataclasses out; driver errors become AppErrors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from server.db.database import Connection
from server.db.sqlfiles import Queries
from server.users.email_address import normalize_email_prefix
from server.web.errors import Conflict

USER_COLUMNS = ("email", "password_hash", "display_name", "status", "roles")


class EmailTaken(Conflict):
    slug = "email-taken"
    title = "Email already registered"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    display_name: str
    status: str
    roles: tuple[str, ...]
    email_verified_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class NewUser:
    email: str  # normalised (server/users/email_address.py): it is what the account is keyed by
    password_hash: str
    display_name: str
    status: str = "active"
    roles: tuple[str, ...] = ("customer",)


@dataclass(frozen=True, slots=True)
class UserFilter:
    status: str | None = None
    role: str | None = None
    email_prefix: str | None = None


def _user(record: asyncpg.Record) -> User:
    return User(
        id=record["id"],
        email=record["email"],
        display_name=record["display_name"],
        status=record["status"],
        roles=tuple(record["roles"]),
        email_verified_at=record["email_verified_at"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


def _maybe(record: asyncpg.Record | None) -> User | None:
    return None if record is None else _user(record)


class UsersRepository:
    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._count = q("count_users")
        self._create = q("create_user")
        self._get = q("get_user_by_id")
        self._credentials = q("get_credentials_by_email")
        self._hash = q("get_password_hash")
        self._rehash = q("update_password_hash")
        self._password = q("update_password")
        self._profile = q("update_profile")
        self._status = q("update_status")
        self._verified = q("update_email_verified")
        self._add_role = q("update_add_role")
        self._remove_role = q("update_remove_role")
        self._delete = q("delete_user")
        self._list = q("list_users")
        self._unnormalized = q("list_users_email_unnormalized")
        self._email = q("update_email")

    async def count(self, conn: Connection) -> int:
        value: int = await conn.fetchval(self._count)
        return value

    async def get(self, conn: Connection, user_id: int) -> User | None:
        return _maybe(await conn.fetchrow(self._get, user_id))

    async def credentials(self, conn: Connection, email: str) -> Credentials | None:
        """By the normalised address (server/users/email_address.normalize_email)."""
        record = await conn.fetchrow(self._credentials, email)
        return None if record is None else Credentials(_user(record), record["password_hash"])

    async def password_hash(self, conn: Connection, user_id: int) -> str | None:
        value: str | None = await conn.fetchval(self._hash, user_id)
        return value

    async def rehash(self, conn: Connection, user_id: int, password_hash: str) -> None:
        await conn.execute(self._rehash, user_id, password_hash)

    async def set_password(self, conn: Connection, user_id: int, password_hash: str) -> None:
        await conn.execute(self._password, user_id, password_hash)

    async def update_profile(self, conn: Connection, user_id: int, display_name: str) -> User:
        record = await conn.fetchrow(self._profile, user_id, display_name)
        assert record is not None
        return _user(record)

    async def set_status(self, conn: Connection, user_id: int, status: str) -> User | None:
        return _maybe(await conn.fetchrow(self._status, user_id, status))

    async def mark_email_verified(self, conn: Connection, user_id: int) -> None:
        await conn.execute(self._verified, user_id)

    async def add_role(self, conn: Connection, user_id: int, role: str) -> User | None:
        """None when the user already had the role (or does not exist)."""
        return _maybe(await conn.fetchrow(self._add_role, user_id, role))

    async def remove_role(self, conn: Connection, user_id: int, role: str) -> User | None:
        return _maybe(await conn.fetchrow(self._remove_role, user_id, role))

    async def delete(self, conn: Connection, user_id: int) -> bool:
        return await conn.execute(self._delete, user_id) == "DELETE 1"

    async def page(
        self,
        conn: Connection,
        *,
        after: tuple[dt.datetime, int] | None,
        where: UserFilter,
        limit: int,
    ) -> list[User]:
        created, last_id = after if after else (None, None)
        prefix = (
            normalize_email_prefix(where.email_prefix)
            .replace("\\", "\\\\")
            .replace("%", "\\%")
            .replace("_", "\\_")
            if where.email_prefix
            else None
        )
        records = await conn.fetch(
            self._list, created, last_id, where.status, where.role, prefix, limit
        )
        return [_user(r) for r in records]

    async def create(self, conn: Connection, new: NewUser) -> User:
        try:
            record = await conn.fetchrow(
                self._create,
                new.email,
                new.password_hash,
                new.display_name,
                new.status,
                list(new.roles),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "users_email_normalized_key":
                raise EmailTaken("An account with this email already exists.") from None
            raise
        assert record is not None
        return _user(record)

    async def unnormalized_emails(self, conn: Connection) -> list[tuple[int, str]]:
        """Accounts whose address may have been stored before hotpath normalised addresses: it
        is not its own key, or not ASCII (see list_users_email_unnormalized)."""
        return [(r["id"], r["email"]) for r in await conn.fetch(self._unnormalized)]

    async def change_email(self, conn: Connection, user_id: int, old: str, new: str) -> bool:
        """False when the address is no longer ``old``; EmailTaken when ``new`` has an account."""
        try:
            return await conn.execute(self._email, user_id, new, old) == "UPDATE 1"
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "users_email_normalized_key":
                raise EmailTaken("An account with this email already exists.") from None
            raise

    async def copy_many(self, conn: Connection, users: Iterable[NewUser]) -> int:
        """Bulk load with COPY: orders of magnitude faster than row-by-row inserts."""
        rows: Sequence[tuple[object, ...]] = [
            (u.email, u.password_hash, u.display_name, u.status, list(u.roles)) for u in users
        ]
        await conn.copy_records_to_table("users", records=rows, columns=USER_COLUMNS)
        return len(rows)
