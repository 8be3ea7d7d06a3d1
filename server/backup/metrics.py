"""hotpath_backup_last_success_timestamp_seconds: when the newest logical backup recorded in
the database (the ``backups`` table, written by ``python -m server backup``) finished; 0 while
none is. Every replica exports it, read every REFRESH_SECONDS, so Prometheus sees it from the
targets it already scrapes: a CronJob's pod lives too briefly to be scraped itself
(docs/decisions/0011-backup-metric-from-the-database.md).

Under multiprocess mode the gauge is the maximum over the live workers (they read the same row).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from structlog.typing import FilteringBoundLogger

from server.backup.repository import BackupRepository
from server.db.database import Database
from server.runtime.metrics import multiprocess_mode

REFRESH_SECONDS = 60.0
NAME = "hotpath_backup_last_success_timestamp_seconds"
HELP = "When the newest recorded logical backup finished, in Unix time (0: none recorded)."


class BackupMetrics(Collector):
    def __init__(
        self,
        repo: BackupRepository,
        *,
        registry: CollectorRegistry | None,
        multiprocess: bool | None = None,
    ) -> None:
        self.repo = repo
        self.finished_at: float | None = None  # None: not read yet, no series
        if multiprocess is None:
            multiprocess = multiprocess_mode()
        self.multiprocess = multiprocess
        if multiprocess:
            self._gauge = Gauge(NAME, HELP, registry=None, multiprocess_mode="livemax")
        elif registry is not None:
            registry.register(self)

    async def refresh(self, db: Database) -> None:
        try:
            async with db.connection() as conn:
                latest = await self.repo.latest_finished_at(conn)
        except asyncpg.UndefinedTableError:
            return  # migration 0012 not applied yet: /readyz says so already
        self.finished_at = latest.timestamp() if latest is not None else 0.0

    async def watch(self, db: Database, logger: FilteringBoundLogger) -> asyncio.Task[None]:
        """Read once now (a worker's first scrape has the figure), then every REFRESH_SECONDS
        in a task; a failed read is logged and keeps the last value."""

        async def read() -> None:
            try:
                await self.refresh(db)
            except Exception as exc:
                logger.warning("backup_metric_not_read", error=type(exc).__name__)

        async def loop() -> None:
            while True:
                await asyncio.sleep(REFRESH_SECONDS)
                await read()

        await read()
        return asyncio.create_task(loop(), name="backup-metric")

    def collect(self) -> Iterator[Metric]:
        if self.finished_at is not None:
            yield GaugeMetricFamily(NAME, HELP, value=self.finished_at)

    def flush(self) -> None:
        if self.multiprocess and self.finished_at is not None:
            self._gauge.set(self.finished_at)
