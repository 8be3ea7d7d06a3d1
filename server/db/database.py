"""The connection pool's creation and the only two ways code reaches a connection.

Every acquire and every statement has a timeout; a pool that is exhausted or a database that
does not answer becomes ``DatabaseUnavailable`` (503 + Retry-After), fast, never a hang. Inside
a request the timeout is also the time the request has left (its deadline), so a lock wait or
a slow statement ends - and is cancelled in PostgreSQL - when the request's time is up
(``DeadlineExceeded``, 503).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import orjson

from middleware.deadline import time_left
from server.db.connection import Connection as Connection
from server.db.connection import PooledConnection
from server.db.pool import ConnectionPool, PoolClosed
from server.runtime.settings import Settings
from server.web.errors import DatabaseUnavailable, DeadlineExceeded

T = TypeVar("T")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}

# Connection failures that mean "the database is not there right now", not "the query is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # What asyncpg 0.32 raises at times, instead of "connection is closed", for the next
    # statement on a connection whose backend was terminated (a restart, pg_terminate_backend).
    asyncpg.InternalClientError,
)

_NO_CONNECTION: tuple[type[BaseException], ...] = (*_UNAVAILABLE, PoolClosed)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back as Python objects, through the same orjson the responses use.
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(settings: Settings, *, statement_cache_size: int = 256) -> ConnectionPool:
    """The started pool (its ``db_pool_min`` connections open), or DatabaseUnavailable."""
    return await open_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_cache_size=statement_cache_size,
        max_lifetime=settings.db_max_lifetime or None,
        max_queries=settings.db_max_queries or None,
    )


async def open_pool(
    url: str,
    *,
    min_size: int,
    max_size: int,
    command_timeout: float = 5.0,
    connect_timeout: float = 3.0,
    statement_cache_size: int = 256,
    max_lifetime: float | None = 3600.0,
    max_queries: int | None = 50_000,
) -> ConnectionPool:
    async def connect() -> PooledConnection:
        raw: asyncpg.Connection = await asyncpg.connect(
            url,
            command_timeout=command_timeout,
            timeout=connect_timeout,
            statement_cache_size=statement_cache_size,
            server_settings={"application_name": "hotpath"},
        )
        try:
            await _init_connection(raw)
        except BaseException:
            raw.terminate()
            raise
        return PooledConnection(raw, command_timeout=command_timeout)

    pool = ConnectionPool(
        connect,
        min_size=min_size,
        max_size=max_size,
        max_lifetime=max_lifetime,
        max_queries=max_queries,
    )
    try:
        await pool.start()
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable("PostgreSQL is not answering.") from exc
    return pool


class Database:
    """The pool plus its acquire timeout; services use ``connection()`` or ``transaction()``."""

    def __init__(self, pool: ConnectionPool, *, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    def connection(self) -> _Acquired:
        """``async with db.connection() as conn``: a pooled connection, released at the end."""
        return _Acquired(self)

    @asynccontextmanager
    async def transaction(self, **options: Any) -> AsyncIterator[PooledConnection]:
        async with self.connection() as conn, conn.transaction(**options):
            yield conn

    async def close(self) -> None:
        await self.pool.close(timeout=10)


class _Acquired:
    """What ``Database.connection()`` returns: a plain class rather than @asynccontextmanager,
    and with a connection idle, no timer and no await on the way in."""

    __slots__ = ("_conn", "_db")

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __aenter__(self) -> PooledConnection:
        pool = self._db.pool
        conn = pool.try_acquire()
        if conn is None:
            timeout = self._db.acquire_timeout
            left = time_left()
            if left is not None and left < timeout:
                timeout = left
            try:
                conn = await pool.acquire(timeout)
            except _NO_CONNECTION as exc:
                raise _unavailable("No database connection is available.", exc) from exc
        self._conn: PooledConnection = conn
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, asyncio.CancelledError):
            # Cancelled mid-statement (a client gone, an outer timeout): what the server did
            # with it is unknown here, e.g. a BEGIN whose answer had not arrived. Never reuse.
            self._db.pool.discard(self._conn)
            return
        self._db.pool.release(self._conn)
        if exc is not None and isinstance(exc, _UNAVAILABLE):
            raise _unavailable("The database connection failed.", exc) from exc


def _unavailable(detail: str, exc: BaseException) -> DatabaseUnavailable | DeadlineExceeded:
    if isinstance(exc, asyncio.TimeoutError):
        left = time_left()
        if left is not None and left <= 0.001:
            return DeadlineExceeded("The request ran out of time waiting for the database.")
    return DatabaseUnavailable(detail)


def record_to(kind: type[T], record: asyncpg.Record) -> T:
    """Build a frozen dataclass from a record's columns of the same names (records stay here)."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind))  # type: ignore[arg-type]
    return kind(*[record[name] for name in names])
