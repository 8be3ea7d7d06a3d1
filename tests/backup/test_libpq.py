"""The address split for pg_dump and pg_restore: what may be shown (and passed as an argument)
never holds the password, which goes to the child's environment only; a missing tool is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.backup.libpq import Target
from server.backup.pgtools import ToolFailed, tool


def test_the_password_leaves_the_url_for_the_environment() -> None:
    target = Target.from_url("postgresql://app:s%40cret@db.internal:6432/shop?sslmode=require")
    assert target.url == "postgresql://app@db.internal:6432/shop?sslmode=require"
    assert target.password == "s@cret"
    assert target.environment()["PGPASSWORD"] == "s@cret"
    assert target.database == "shop"
    scratch = target.with_database("shop_verify")
    assert scratch.url == "postgresql://app@db.internal:6432/shop_verify?sslmode=require"
    assert scratch.password == "s@cret"


def test_an_address_without_password_adds_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "from-the-operator")
    target = Target.from_url("postgres://db/shop")
    assert (target.url, target.password) == ("postgres://db/shop", None)
    assert target.environment()["PGPASSWORD"] == "from-the-operator"
    with pytest.raises(ValueError, match="postgresql://"):
        Target.from_url("mysql://db/shop")


def test_a_missing_tool_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ToolFailed, match=f"pg_dump not found in {tmp_path}"):
        tool("pg_dump", tmp_path)
