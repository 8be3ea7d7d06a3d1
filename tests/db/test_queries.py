"""Every named query prepares against the migrated schema, so a typo fails here, not in prod."""

from __future__ import annotations

import asyncpg
import pytest

from server.db.sqlfiles import load_queries


async def test_every_named_query_prepares(migrated_db: str) -> None:
    queries = load_queries()
    assert len(queries) > 0
    conn = await asyncpg.connect(migrated_db)
    try:
        for query in queries:
            statement = await conn.prepare(query.sql)
            if query.kind in ("one", "many", "val"):
                assert statement.get_attributes(), f"{query.name} returns no columns"
            if query.kind == "val":
                assert len(statement.get_attributes()) == 1, f"{query.name} is :val"
    finally:
        await conn.close()


async def test_a_broken_query_would_fail_this_check(migrated_db: str) -> None:
    conn = await asyncpg.connect(migrated_db)
    try:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await conn.prepare("SELECT no_such_column FROM users")
    finally:
        await conn.close()
