"""Fixtures shared by the suite: each run gets its own PostgreSQL databases and drops them."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.db.migrate import migrate
from server.runtime.logs import configure_logging
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from tests.support import ThrowawayRedis, client_for, lifespan

ADMIN_URL = os.environ.get(
    "HOTPATH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HOTPATH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))


async def create_database(prefix: str) -> str:
    name = f"hotpath_{prefix}_{RUN_ID}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name)


async def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def migrated_db() -> AsyncIterator[str]:
    """One migrated database for the whole run."""
    url = await create_database("test")
    try:
        await migrate(url, MIGRATIONS_DIR)
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def empty_db() -> AsyncIterator[str]:
    """A fresh, unmigrated database for one test."""
    url = await create_database("empty")
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def log_stream() -> io.BytesIO:
    return io.BytesIO()


@pytest.fixture
def logger(log_stream: io.BytesIO) -> FilteringBoundLogger:
    return configure_logging("info", stream=log_stream)


@pytest.fixture
def settings(migrated_db: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        database_url=migrated_db,
        database_url_explicit=True,
        redis_url=REDIS_URL,
        secret_key=secrets.token_urlsafe(32),
        data_dir=tmp_path_factory.mktemp("data"),
        embedded_db=False,
        db_pool_min=1,
        db_pool_max=4,
        # Tests fire up to 50 requests at once at those four connections; on a loaded box (the
        # suite runs in several processes) some wait past the 1 s default, and their 503 is
        # not what those tests are about. Tests of the wait itself set their own timeout.
        db_acquire_timeout=10.0,
        # On in tests/ratelimit only: elsewhere hundreds of requests from the one test client
        # address would spend the strict auth budget.
        rate_limits=False,
    )


@pytest.fixture
def app(settings: Settings, logger: FilteringBoundLogger) -> HotpathApp:
    return create_app(settings, logger=logger)


@pytest.fixture
async def client(app: HotpathApp) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan(app), client_for(app) as http:
        yield http


@pytest.fixture(autouse=True)
def _no_multiprocess_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A Redis of the test's own, which it may kill and restart (never the shared one)."""
    server = ThrowawayRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()
