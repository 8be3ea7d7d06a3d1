"""RolesRepository against the run's database: driver errors become domain errors by the
constraint that raised them."""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from server.db.sqlfiles import load_queries
from server.roles.repository import RoleExists, RolesRepository


def role_name() -> str:
    return "r" + secrets.token_hex(4)


async def test_a_taken_name_is_role_exists(conn: asyncpg.Connection) -> None:
    repo = RolesRepository(load_queries())
    name = role_name()
    await repo.create(conn, name, "first", ["users:read"])
    with pytest.raises(RoleExists):
        async with conn.transaction():
            await repo.create(conn, name, "second", ["users:read"])


async def test_another_unique_violation_is_not_role_exists(conn: asyncpg.Connection) -> None:
    # A second unique constraint, as a later migration could add one; made and dropped inside
    # the test's transaction.
    await conn.execute(
        "CREATE UNIQUE INDEX roles_test_description_key ON roles (description)"
        " WHERE description LIKE 'only-%'"
    )
    repo = RolesRepository(load_queries())
    description = "only-" + secrets.token_hex(4)
    await repo.create(conn, role_name(), description, [])
    with pytest.raises(asyncpg.UniqueViolationError) as caught:
        async with conn.transaction():
            await repo.create(conn, role_name(), description, [])
    assert caught.value.constraint_name == "roles_test_description_key"
