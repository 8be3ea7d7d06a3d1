"""hotpath_backup_last_success_timestamp_seconds on a replica's /metrics: 0 while no backup is
recorded, then the finish time of the newest one python -m server backup recorded."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import httpx
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.app import create_app
from server.backup.metrics import NAME, BackupMetrics
from server.backup.repository import BackupRepository
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings
from tests.fixtures.backups import backup_path, run_server
from tests.fixtures.support import client_for, lifespan


def _value(exposition: str) -> float:
    found = re.search(rf"^{NAME} (\S+)$", exposition, re.MULTILINE)
    assert found is not None, exposition
    return float(found[1])


async def test_the_metric_is_zero_until_a_backup_is_recorded(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert _value(response.text) == 0.0


async def test_a_replica_exports_the_newest_recorded_backup(
    settings: Settings, logger: FilteringBoundLogger, own_db: str, tmp_path: Path
) -> None:
    for _ in range(2):
        backup_path(await run_server("backup", "--to", str(tmp_path), database_url=own_db))
    conn = await asyncpg.connect(own_db)
    try:
        newest = await conn.fetchval("SELECT max(finished_at) FROM backups")
    finally:
        await conn.close()
    app = create_app(settings, logger=logger)
    async with lifespan(app), client_for(app, client=("127.0.0.1", 1)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert _value(response.text) == newest.timestamp()


async def test_before_its_migration_there_is_no_series_rather_than_a_wrong_one(
    settings: Settings, empty_db: str
) -> None:
    metrics = BackupMetrics(BackupRepository(load_queries()), registry=CollectorRegistry())
    app_settings = settings.with_database_url(empty_db)
    app = create_app(app_settings)
    async with lifespan(app):
        container = app.state.container
        await metrics.refresh(container.db)
    assert metrics.finished_at is None
    assert list(metrics.collect()) == []
