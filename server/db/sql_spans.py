"""A client span per SQL statement, when tracing is on: the pool then hands out
``TracedConnection``s instead of plain ``PooledConnection``s (chosen once, at start-up).

A span is named by the statement's query name from sql/ (``get_product``), found by its text;
any other statement by its first word (``BEGIN``, ``SELECT``). Neither the arguments nor the
text are recorded: only the name, ``db.system.name`` and, for a query of sql/, its name again
as ``db.query.summary``.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg
from opentelemetry.trace import SpanKind, Tracer

from server.db.connection import PooledConnection
from server.db.sqlfiles import Queries
from server.runtime.tracing import active_tracer

T = TypeVar("T")


def connection_class(queries: Queries) -> type[PooledConnection]:
    """What the pool should open: traced connections while tracing is on, else plain ones."""
    tracer = active_tracer()
    if tracer is None:
        return PooledConnection
    return traced_connection_class(tracer, queries)


def traced_connection_class(tracer: Tracer, queries: Queries) -> type[PooledConnection]:
    """A PooledConnection whose statements are spans of ``tracer``, named from ``queries``."""
    names = {query.sql: query.name for query in queries}

    async def traced(query: str, statement: Coroutine[Any, Any, T]) -> T:
        name = names.get(query)
        attributes = {"db.system.name": "postgresql"}
        if name is None:
            name = query.split(None, 1)[0].upper() if query.strip() else "SQL"
        else:
            attributes["db.query.summary"] = name
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
            return await statement

    class TracedConnection(PooledConnection):
        __slots__ = ()

        def fetch(self, query: str, *args: object) -> Coroutine[Any, Any, list[asyncpg.Record]]:
            return traced(query, super().fetch(query, *args))

        def fetchrow(self, query: str, *args: object) -> Coroutine[Any, Any, asyncpg.Record | None]:
            return traced(query, super().fetchrow(query, *args))

        def fetchval(self, query: str, *args: object) -> Coroutine[Any, Any, Any]:
            return traced(query, super().fetchval(query, *args))

        def execute(self, query: str, *args: object) -> Coroutine[Any, Any, str]:
            return traced(query, super().execute(query, *args))

        def executemany(
            self, command: str, args: Iterable[Sequence[object]]
        ) -> Coroutine[Any, Any, None]:
            return traced(command, super().executemany(command, args))

    return TracedConnection
