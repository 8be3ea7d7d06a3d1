"""The connection pool's creation and the only two ways code reaches a connection.

Every acquire and every statement has a timeout; a pool that is exhausted or a database that
does not answer becomes ``DatabaseUnavailable`` (503 + Retry-After), fast, never a hang. Inside
a request the timeout is also the time the request has left (its deadline), so a lock wait or
a slow statement ends - and is cancelled in PostgreSQL - when the request's time is up
(``DeadlineExceeded``, 503).

A PostgreSQL that stops answering without closing its connections (paused, a host gone dark)
is found within the acquire timeout by whatever has to open a connection or take one that sat
idle (the pool checks those first). A statement already sent to it ends at its own timeout;
its connection is then closed, not reused, once asyncpg's cancel of the statement is
acknowledged, which that server does not do either: the wait for it is bounded by the acquire
timeout too (docs/decisions/0009-stalled-postgres.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import operator
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import orjson

from middleware.deadline import time_left
from server.db.connection import Connection as Connection
from server.db.connection import PooledConnection
from server.db.pool import ConnectionPool, PoolClosed
from server.runtime.settings import Settings
from server.web.errors import DatabaseUnavailable, DeadlineExceeded

if TYPE_CHECKING:
    from server.db.replicas import ReplicaSet

T = TypeVar("T")
P = ParamSpec("P")
_COLUMNS: dict[type, Callable[[asyncpg.Record], tuple[Any, ...]]] = {}

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

# What a holder can leave with that makes its connection unfit for reuse: cancelled or timed
# out mid-statement, or broken.
_ABANDONED: tuple[type[BaseException], ...] = (asyncio.CancelledError, *_UNAVAILABLE)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back as Python objects, through the same orjson the responses use.
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(
    settings: Settings,
    *,
    statement_cache_size: int = 256,
    connection_class: type[PooledConnection] = PooledConnection,
) -> ConnectionPool:
    """The started pool (its ``db_pool_min`` connections open), or DatabaseUnavailable.

    Behind a transaction pooler (``db_pooler="transaction"``) each transaction, and each
    statement outside one, may run on a different server connection, where a statement this
    connection prepared does not exist: the statement cache is off then, so asyncpg sends every
    statement unnamed (parse, describe and flush, then bind, execute and sync, one unit to the
    pooler). Nothing else here keeps session state: no SET, LISTEN, temporary table or
    session advisory lock (migrations take one, so they go to ``migration_url``)."""
    if settings.db_pooler == "transaction":
        statement_cache_size = 0
    return await open_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_cache_size=statement_cache_size,
        max_lifetime=settings.db_max_lifetime or None,
        max_queries=settings.db_max_queries or None,
        # What wraps each connection: server/db/sql_spans.py's traced one when tracing is on.
        connection_class=connection_class,
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
    connection_class: type[PooledConnection] = PooledConnection,
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
        return connection_class(raw, command_timeout=command_timeout)

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
        # Streaming replicas, when DATABASE_REPLICA_URLS names some (server/db/replicas.py).
        self.replicas: ReplicaSet | None = None

    def lag_tolerant(self) -> Database:
        """Where a read may go that tolerates the replica lag (HOTPATH_REPLICA_MAX_LAG) and
        needs nothing its caller may just have written: a replica in rotation, else here."""
        replicas = self.replicas
        return self if replicas is None else replicas.pick()

    async def lag_tolerant_for(self, user_id: int | None) -> Database:
        """Where a read by ``user_id`` may go that tolerates the replica lag but must show that
        user's own writes: a replica in rotation that has replayed their latest one, else here.
        None (anonymous): any replica in rotation, as ``lag_tolerant()``."""
        replicas = self.replicas
        if replicas is None:
            return self
        return replicas.pick() if user_id is None else await replicas.for_reader(user_id)

    def connection(self) -> _Acquired:
        """``async with db.connection() as conn``: a pooled connection, released at the end."""
        return _Acquired(self)

    async def run(
        self,
        work: Callable[Concatenate[PooledConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await work(conn, *args, **kwargs)`` on a pooled connection, released at the end:
        ``async with db.connection()`` around one await, with the same acquire timeout and
        deadline, the same release checks and the same handling of a holder cancelled, timed
        out or broken mid-statement, in one coroutine. The context manager costs an object and
        two coroutines more (its enter and exit), on the uncached product read among others
        (issue 13, issue 19)."""
        pool = self.pool
        conn = pool.try_acquire()
        if conn is None:
            conn = await self._acquire()
        try:
            result = await work(conn, *args, **kwargs)
        except _ABANDONED as exc:
            await self._abandoned(conn, exc)
            raise
        except BaseException:
            pool.release(conn)
            raise
        pool.release(conn)
        return result

    def transaction(self, **options: Any) -> _Transaction:
        """``async with db.transaction() as conn``: a pooled connection inside a transaction,
        committed at the end, rolled back on an error. With read replicas, a signed-in
        request's commit also notes how far into the WAL it went, for that user's reads
        (server/db/write_marks.py)."""
        return _Transaction(self, options)

    async def close(self) -> None:
        await self.pool.close(timeout=10)

    async def _acquire(self) -> PooledConnection:
        """A connection when none is idle: within the acquire timeout or the time the request
        has left, whichever ends first; DatabaseUnavailable (or DeadlineExceeded) otherwise."""
        timeout = self.acquire_timeout
        left = time_left()
        if left is not None and left < timeout:
            timeout = left
        try:
            return await self.pool.acquire(timeout)
        except _NO_CONNECTION as exc:
            raise _unavailable("No database connection is available.", exc) from exc

    async def _abandoned(self, conn: PooledConnection, exc: BaseException) -> None:
        """Take back ``conn`` from a holder cancelled or timed out mid-statement (a client
        gone, the deadline, a server that stopped answering), or whose connection broke: what
        the server did with the statement is unknown here (a BEGIN whose answer had not
        arrived, say), and asyncpg may still be waiting for its cancel to be acknowledged.
        Never reused. A cancelled holder goes on at once (its ``CancelledError`` is the
        caller's to raise); otherwise DatabaseUnavailable (or DeadlineExceeded) is raised once
        the statement has ended in the server (from a healthy one, at once), or after the
        acquire timeout from one that does not answer."""
        if isinstance(exc, asyncio.CancelledError):
            self.pool.discard(conn)  # closed in the background: a cancelled task waits for none
            return
        await self.pool.close_timed_out(conn, self.acquire_timeout)
        raise _unavailable("The database connection failed.", exc) from exc


class _Acquired:
    """What ``Database.connection()`` returns: a plain class rather than @asynccontextmanager,
    and with a connection idle, no timer and no await on the way in."""

    __slots__ = ("_conn", "_db")

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __aenter__(self) -> PooledConnection:
        conn = self._db.pool.try_acquire()
        if conn is None:
            conn = await self._db._acquire()
        self._conn: PooledConnection = conn
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or not isinstance(exc, _ABANDONED):
            self._db.pool.release(self._conn)
            return
        # Never reused; a cancelled holder's CancelledError goes on as raised, anything else
        # becomes DatabaseUnavailable (or DeadlineExceeded).
        await self._db._abandoned(self._conn, exc)


class _Transaction(_Acquired):
    """What ``Database.transaction()`` returns: ``_Acquired`` around asyncpg's transaction. A
    plain class rather than @asynccontextmanager, which cost an order 9-15% of its samples (a
    generator, its frame and the athrow machinery per request); the connection's release on the
    way out is ``_Acquired``'s, whatever ended the transaction."""

    __slots__ = ("_options", "_transaction")

    def __init__(self, db: Database, options: dict[str, Any]) -> None:
        self._db = db
        self._options = options

    async def __aenter__(self) -> PooledConnection:
        conn = await _Acquired.__aenter__(self)
        try:
            self._transaction = conn.transaction(**self._options)
            await self._transaction.start()
        except BaseException as exc:
            await _Acquired.__aexit__(self, type(exc), exc, exc.__traceback__)
            raise
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None:
            replicas = self._db.replicas
            try:
                await self._transaction.commit()
                written = None if replicas is None else await replicas.after_commit(self._conn)
            except BaseException as error:
                await _Acquired.__aexit__(self, type(error), error, error.__traceback__)
                raise
            await _Acquired.__aexit__(self, None, None, None)
            if written is not None and replicas is not None:
                await replicas.remember(*written)  # once the connection is back in the pool
            return
        # Abandoned (cancelled, timed out, broken): no ROLLBACK. The connection is closed on
        # the way out, which ends the transaction in the server; a ROLLBACK would first wait
        # for asyncpg's cancel of a timed-out statement: up to the command timeout again from a
        # server that is not there.
        if not isinstance(exc, _ABANDONED):
            try:
                await self._transaction.rollback()
            except BaseException as error:
                await _Acquired.__aexit__(self, type(error), error, error.__traceback__)
                raise
        # Releases the connection, or replaces ``exc`` with DatabaseUnavailable; else ``exc``
        # goes on as raised.
        await _Acquired.__aexit__(self, kind, exc, tb)


def _unavailable(detail: str, exc: BaseException) -> DatabaseUnavailable | DeadlineExceeded:
    if isinstance(exc, asyncio.TimeoutError):
        left = time_left()
        if left is not None and left <= 0.001:
            return DeadlineExceeded("The request ran out of time waiting for the database.")
    return DatabaseUnavailable(detail)


def record_to(kind: type[T], record: asyncpg.Record) -> T:
    """Build a frozen dataclass from a record's columns of the same names (records stay here).

    The columns are read by one ``itemgetter`` per class, kept: a C call for all of them
    rather than a list comprehension's frame and a subscript per field (issue 19)."""
    columns = _COLUMNS.get(kind)
    if columns is None:
        columns = _COLUMNS[kind] = _columns_of(kind)
    return kind(*columns(record))


def _columns_of(kind: type) -> Callable[[asyncpg.Record], tuple[Any, ...]]:
    names = [f.name for f in dataclasses.fields(kind)]
    if len(names) == 1:  # itemgetter of one name gives the value, not a 1-tuple
        (name,) = names
        return lambda record: (record[name],)
    return operator.itemgetter(*names)
