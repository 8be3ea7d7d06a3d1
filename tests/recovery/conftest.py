"""tests/recovery/ runs the app on a throwaway cluster that archives its WAL with the shipped
pgBackRest configuration (tests/fixtures/pitr.py); never on the shared server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from tests.fixtures.cluster import ThrowawayPostgres
from tests.fixtures.pitr import PgBackRest

DATABASE = "hotpath"


@pytest.fixture
def archived_cluster() -> Iterator[tuple[ThrowawayPostgres, PgBackRest]]:
    cluster = ThrowawayPostgres()
    try:
        backrest = PgBackRest.archiving(cluster)
        backrest.run("check")
        yield cluster, backrest
    finally:
        cluster.stop()


@pytest.fixture
async def archived_db(
    archived_cluster: tuple[ThrowawayPostgres, PgBackRest],
) -> str:
    url = await archived_cluster[0].create_database(DATABASE)
    await migrate(url, MIGRATIONS_DIR)
    return url


@pytest.fixture
def settings(settings: Settings, archived_db: str) -> Settings:
    # Single-node: the product cache and revocations stay inside this process, off shared Redis.
    return dataclasses.replace(settings.with_database_url(archived_db), redis_url=None)
