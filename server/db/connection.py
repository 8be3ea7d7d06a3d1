"""The connection repositories receive. ``Connection`` is what they need from one, which an
asyncpg connection also offers (tools and tests pass those); ``PooledConnection`` is what the
pool hands out: an asyncpg connection behind those methods, each statement given the request's
deadline through asyncpg's public ``timeout=``.

A statement's timeout is the time its request has left, capped by the command timeout; outside
a request it is the command timeout alone. asyncpg cancels the statement inside PostgreSQL when
it times out, so a lock wait or a slow query ends there too. Past the deadline a statement is
not sent at all (TimeoutError, which ``Database`` answers as ``DeadlineExceeded``).

execute() without arguments (BEGIN, COMMIT, ROLLBACK, and what asyncpg's ``transaction()``
runs) keeps the command timeout: the rollback of a request whose time ran out must still run.
So does COPY, which only tools use.

The methods are plain functions handing back asyncpg's coroutine: no frame of their own per
statement. They also keep what the pool checks before reusing the connection: how many
statements it has run, and the last one, which must have finished by the time it comes back.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

import asyncpg
from asyncpg.transaction import Transaction

from middleware.deadline import time_left


class Connection(Protocol):
    def fetch(self, query: str, /, *args: object) -> Awaitable[list[asyncpg.Record]]: ...

    def fetchrow(self, query: str, /, *args: object) -> Awaitable[asyncpg.Record | None]: ...

    def fetchval(self, query: str, /, *args: object) -> Awaitable[Any]: ...

    def execute(self, query: str, /, *args: object) -> Awaitable[str]: ...

    def executemany(self, command: str, args: Iterable[Sequence[object]], /) -> Awaitable[None]: ...

    def copy_records_to_table(
        self, table_name: str, /, *, records: Iterable[Sequence[object]], columns: Iterable[str]
    ) -> Awaitable[str]: ...

    def is_in_transaction(self) -> bool: ...


class PooledConnection:
    """A connection of the pool, as services and repositories use it; ``raw`` is asyncpg's."""

    __slots__ = ("command_timeout", "expires_at", "last", "queries", "raw")

    def __init__(self, raw: asyncpg.Connection, *, command_timeout: float | None = None) -> None:
        self.raw = raw
        # The cap on every statement's timeout: the command timeout ``raw`` was opened with.
        self.command_timeout = command_timeout
        self.queries = 0  # statements sent through it (not asyncpg's own BEGIN and COMMIT)
        # The last of them: its coroutine keeps a frame until the statement is over. Any, as
        # asyncpg's methods are typed as plain Coroutines, which do not declare cr_frame.
        self.last: Any = None
        self.expires_at = math.inf  # the pool's: when to replace it

    def _timeout(self) -> float | None:
        left = time_left()
        cap = self.command_timeout
        if left is None:
            return cap  # outside a request (None: asyncpg's own command timeout)
        if left <= 0:
            raise TimeoutError("the request's deadline has passed")
        return left if cap is None or left < cap else cap

    def fetch(self, query: str, *args: object) -> Coroutine[Any, Any, list[asyncpg.Record]]:
        self.last = statement = self.raw.fetch(query, *args, timeout=self._timeout())
        self.queries += 1
        return statement

    def fetchrow(self, query: str, *args: object) -> Coroutine[Any, Any, asyncpg.Record | None]:
        self.last = statement = self.raw.fetchrow(query, *args, timeout=self._timeout())
        self.queries += 1
        return statement

    def fetchval(self, query: str, *args: object) -> Coroutine[Any, Any, Any]:
        self.last = statement = self.raw.fetchval(query, *args, timeout=self._timeout())
        self.queries += 1
        return statement

    def execute(self, query: str, *args: object) -> Coroutine[Any, Any, str]:
        if args:
            self.last = statement = self.raw.execute(query, *args, timeout=self._timeout())
        else:
            self.last = statement = self.raw.execute(query)
        self.queries += 1
        return statement

    def executemany(
        self, command: str, args: Iterable[Sequence[object]]
    ) -> Coroutine[Any, Any, None]:
        self.last = statement = self.raw.executemany(command, args, timeout=self._timeout())
        self.queries += 1
        return statement

    def copy_records_to_table(
        self, table_name: str, *, records: Iterable[Sequence[object]], columns: Iterable[str]
    ) -> Coroutine[Any, Any, str]:
        self.last = statement = self.raw.copy_records_to_table(
            table_name, records=records, columns=columns
        )
        self.queries += 1
        return statement

    def transaction(self, **options: Any) -> Transaction:
        return self.raw.transaction(**options)

    def is_in_transaction(self) -> bool:
        return self.raw.is_in_transaction()

    def is_closed(self) -> bool:
        return self.raw.is_closed()

    def terminate(self) -> None:
        self.raw.terminate()

    async def close(self, timeout: float) -> None:
        await self.raw.close(timeout=timeout)
