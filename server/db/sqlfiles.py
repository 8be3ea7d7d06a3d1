"""Named SQL queries loaded from ``sql/*.sql`` once at start-up.

A file holds blocks like::

    -- name: get_user_by_id :one
    -- Comment lines under the name document the query.
    SELECT ... WHERE id = $1;

The kind (``:one :many :val :exec :execrows``) tells the repository how to run it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from server.runtime.paths import SQL_DIR

QueryKind = Literal["one", "many", "val", "exec", "execrows"]
_KINDS = frozenset({"one", "many", "val", "exec", "execrows"})
_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[a-z][a-z0-9_]*)\s+:(?P<kind>[a-z]+)\s*$")
_NAME_PREFIXES = ("get_", "list_", "create_", "update_", "delete_", "count_", "exists_")


class QueryFileError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    kind: QueryKind
    sql: str
    doc: str
    source: str


class Queries:
    """Every named query, looked up by name; a missing name fails at once."""

    def __init__(self, queries: dict[str, Query]) -> None:
        self._queries = dict(queries)

    def __getitem__(self, name: str) -> Query:
        try:
            return self._queries[name]
        except KeyError:
            raise QueryFileError(f"no SQL query named {name!r}") from None

    def sql(self, name: str) -> str:
        return self[name].sql

    def __iter__(self) -> Iterator[Query]:
        return iter(self._queries.values())

    def __len__(self) -> int:
        return len(self._queries)


def parse_queries(text: str, source: str) -> list[Query]:
    queries: list[Query] = []
    name: str | None = None
    kind = ""
    doc: list[str] = []
    body: list[str] = []

    def finish() -> None:
        if name is None:
            return
        sql = "\n".join(body).strip().rstrip(";").strip()
        if not sql:
            raise QueryFileError(f"{source}: query {name} has no SQL")
        queries.append(Query(name, cast(QueryKind, kind), sql, " ".join(doc), source))

    for lineno, line in enumerate(text.splitlines(), 1):
        match = _NAME_LINE.match(line.strip())
        if match:
            finish()
            name, kind, doc, body = match["name"], match["kind"], [], []
            if kind not in _KINDS:
                raise QueryFileError(f"{source}:{lineno}: unknown kind :{kind}")
            if not name.startswith(_NAME_PREFIXES):
                raise QueryFileError(f"{source}:{lineno}: {name} must start with a verb")
        elif line.strip().startswith("--name") or line.strip().startswith("-- name"):
            raise QueryFileError(f"{source}:{lineno}: malformed name line: {line.strip()}")
        elif name is None:
            if line.strip() and not line.strip().startswith("--"):
                raise QueryFileError(f"{source}:{lineno}: SQL before the first -- name: line")
        elif line.strip().startswith("--") and not body:
            doc.append(line.strip()[2:].strip())
        else:
            body.append(line)
    finish()
    return queries


def load_queries(directory: Path = SQL_DIR) -> Queries:
    found: dict[str, Query] = {}
    for path in sorted(directory.glob("*.sql")):
        for query in parse_queries(path.read_text(encoding="utf-8"), path.name):
            if query.name in found:
                other = found[query.name].source
                raise QueryFileError(f"query {query.name} is defined in {other} and {path.name}")
            found[query.name] = query
    return Queries(found)
