"""The lifespan-built object graph: pools, Redis, queries, repositories and services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from server.db import Database, create_pool
from server.health.service import DrainState, HealthService
from server.paths import MIGRATIONS_DIR
from server.redis_link import RedisLink, open_redis
from server.settings import Settings
from server.sqlfiles import Queries, load_queries


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    logger: FilteringBoundLogger
    db: Database
    redis: RedisLink
    queries: Queries
    health: HealthService


ContainerFactory = Callable[
    [Settings, FilteringBoundLogger, DrainState], AbstractAsyncContextManager[Container]
]


@asynccontextmanager
async def build_container(
    settings: Settings,
    logger: FilteringBoundLogger,
    drain: DrainState,
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
) -> AsyncIterator[Container]:
    queries = load_queries()
    pool = await create_pool(settings, statement_cache_size=max(256, len(queries) * 2))
    db = Database(pool, acquire_timeout=settings.db_acquire_timeout)
    try:
        async with open_redis(
            settings.redis_url, timeout=settings.redis_timeout, logger=logger
        ) as redis:
            health = HealthService(
                db,
                redis,
                drain=drain,
                migrations_dir=migrations_dir,
                redis_required=settings.redis_required,
                timeout=settings.db_acquire_timeout,
            )
            yield Container(settings, logger, db, redis, queries, health)
    finally:
        await db.close()
