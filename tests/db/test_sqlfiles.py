from __future__ import annotations

from pathlib import Path

import pytest

from server.db.sqlfiles import QueryFileError, load_queries, parse_queries

TEXT = """
-- name: get_thing :one
-- Fetch one thing.
-- By id.
SELECT * FROM things WHERE id = $1;

-- name: list_things :many
SELECT * FROM things
ORDER BY id;
"""


def test_parses_names_kinds_docs_and_sql() -> None:
    one, many = parse_queries(TEXT, "things.sql")
    assert (one.name, one.kind, one.doc) == ("get_thing", "one", "Fetch one thing. By id.")
    assert one.sql == "SELECT * FROM things WHERE id = $1"
    assert many.kind == "many"
    assert many.sql == "SELECT * FROM things\nORDER BY id"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: get_x :some\nSELECT 1;", "unknown kind"),
        ("-- name: fetch_x :one\nSELECT 1;", "must start with a verb"),
        ("-- name: get_x :one\n", "has no SQL"),
        ("SELECT 1;\n-- name: get_x :one\nSELECT 1;", "before the first"),
        ("-- name get_x :one\nSELECT 1;", "malformed"),
    ],
)
def test_rejects_bad_files(text: str, message: str) -> None:
    with pytest.raises(QueryFileError, match=message):
        parse_queries(text, "bad.sql")


def test_duplicate_names_across_files_fail_at_load(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: get_x :val\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: get_x :val\nSELECT 2;\n")
    with pytest.raises(QueryFileError, match=r"a\.sql and b\.sql"):
        load_queries(tmp_path)


def test_missing_name_fails_loudly() -> None:
    queries = load_queries()
    assert queries.sql("count_users").startswith("SELECT")
    with pytest.raises(QueryFileError, match="no SQL query named"):
        queries.sql("get_unicorn")
