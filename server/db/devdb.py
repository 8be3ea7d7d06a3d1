"""Finding a database to talk to: the configured one, the local default, or an embedded one.

Used by ``serve --prepare`` (``make run``) and the ``migrate``/``seed`` commands: create the
database when it is missing, and with no PostgreSQL answering on the default address in
development, start an embedded PostgreSQL under ``<data_dir>/postgres``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
from structlog.typing import FilteringBoundLogger

from server.db.embedded_pg import postgres_answers, start_embedded
from server.runtime.settings import Settings


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


async def create_database_if_missing(url: str, *, timeout: float) -> bool:
    name = database_name(url)
    # No statement cache: two statements, and ``url`` may be a transaction pooler's.
    conn = await asyncpg.connect(
        _with_database(url, "postgres"), timeout=timeout, statement_cache_size=0
    )
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def resolve_database(settings: Settings, logger: FilteringBoundLogger) -> Settings:
    """Return settings whose database_url answers, creating the database if needed."""
    url = settings.database_url
    if not postgres_answers(url, timeout=settings.db_connect_timeout):
        if settings.database_url_explicit or not settings.embedded_db:
            raise SystemExit(f"PostgreSQL at {_redact(url)} is not answering")
        data_dir = (settings.data_dir / "postgres").resolve()
        logger.info("embedded_postgres_starting", data_dir=str(data_dir))
        url = _with_database(start_embedded(data_dir), database_name(url))
        settings = settings.with_database_url(url)
        # It outlives this process (the next start reuses it): say how to stop it.
        logger.info("embedded_postgres_started", dsn=_redact(url), stop_with="make stop")
    if await create_database_if_missing(url, timeout=settings.db_connect_timeout):
        logger.info("database_created", database=database_name(url))
    return settings


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)
