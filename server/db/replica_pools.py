"""Opening the read replicas' pools from the settings and attaching them to the primary's
``Database`` (server/db/replicas.py routes the reads)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.db.database import Database, open_pool
from server.db.replica_lag import Replica
from server.db.replicas import ReplicaSet
from server.runtime.settings import Settings


async def attach_replicas(
    db: Database,
    settings: Settings,
    *,
    statement_cache_size: int,
    logger: FilteringBoundLogger,
    registry: CollectorRegistry | None,
) -> ReplicaSet | None:
    """With DATABASE_REPLICA_URLS set: the replica set, attached to ``db`` (its
    ``lag_tolerant()`` reads) and checking; close it after ``db``'s users are done."""
    if not settings.database_replica_urls:
        return None
    replicas = await open_replicas(
        db,
        settings.database_replica_urls,
        pool_max=settings.db_pool_max,
        acquire_timeout=settings.db_acquire_timeout,
        command_timeout=settings.db_command_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_cache_size=0 if settings.db_pooler == "transaction" else statement_cache_size,
        max_lag=settings.replica_max_lag,
        logger=logger,
        registry=registry,
    )
    replicas.signed_in_reads = settings.replica_signed_in_reads
    await replicas.check()  # in rotation from the first request, when caught up
    replicas.start()
    db.replicas = replicas
    return replicas


async def open_replicas(
    primary: Database,
    urls: tuple[str, ...],
    *,
    pool_max: int,
    acquire_timeout: float,
    command_timeout: float,
    connect_timeout: float,
    statement_cache_size: int,
    max_lag: float,
    logger: FilteringBoundLogger,
    registry: CollectorRegistry | None,
) -> ReplicaSet:
    """A pool per replica, opened with no connection yet: a replica down at start-up is only
    out of rotation, never a reason not to start."""
    replicas = []
    for index, url in enumerate(urls):
        pool = await open_pool(
            url,
            min_size=0,
            max_size=pool_max,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
            statement_cache_size=statement_cache_size,
        )
        replicas.append(Replica(str(index), Database(pool, acquire_timeout=acquire_timeout)))
        logger.info("db_replica_configured", replica=str(index))
    return ReplicaSet(primary, replicas, max_lag=max_lag, logger=logger, registry=registry)
