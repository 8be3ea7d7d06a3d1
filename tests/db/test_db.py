"""Pool timeouts: exhaustion and a missing database answer fast with DatabaseUnavailable."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from structlog.typing import FilteringBoundLogger

from server.app import create_app
from server.db.database import Database, create_pool
from server.db.pool_metrics import PoolMetrics
from server.runtime.settings import Settings
from server.web.errors import DatabaseUnavailable
from server.web.responses import JSONResponse
from server.web.state import container
from tests.fixtures.support import client_for, free_port, lifespan


async def test_exhausted_pool_fails_fast(settings: Settings) -> None:
    small = replace(settings, db_pool_min=1, db_pool_max=1, db_acquire_timeout=0.2)
    db = Database(await create_pool(small), acquire_timeout=small.db_acquire_timeout)
    try:
        async with db.connection():
            started = time.perf_counter()
            with pytest.raises(DatabaseUnavailable):
                async with db.connection():
                    pass
            assert time.perf_counter() - started < 1.0
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_statement_timeout_becomes_unavailable(settings: Settings) -> None:
    quick = replace(settings, db_command_timeout=0.2)
    db = Database(await create_pool(quick), acquire_timeout=1.0)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.connection() as conn:
                await conn.execute("SELECT pg_sleep(5)")
        async with db.transaction() as conn:
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await db.close()


async def test_unreachable_database_fails_fast(settings: Settings) -> None:
    nowhere = replace(
        settings,
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        db_connect_timeout=0.5,
    )
    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailable):
        await create_pool(nowhere)
    assert time.perf_counter() - started < 2.0


async def test_exhaustion_answers_503_with_retry_after(
    settings: Settings, logger: FilteringBoundLogger
) -> None:
    gate = asyncio.Event()

    async def hold(request: Request) -> Response:
        async with container(request).db.connection():
            await gate.wait()
        return JSONResponse({"held": True})

    async def query(request: Request) -> Response:
        async with container(request).db.connection() as conn:
            return JSONResponse({"one": await conn.fetchval("SELECT 1")})

    small = replace(settings, db_pool_min=1, db_pool_max=1, db_acquire_timeout=0.2)
    app = create_app(small, logger=logger)
    app.router.routes.extend([Route("/test/hold", hold), Route("/test/query", query)])
    async with lifespan(app), client_for(app) as http:
        holder = asyncio.create_task(http.get("/test/hold"))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        blocked: httpx.Response = await http.get("/test/query")
        elapsed = time.perf_counter() - started
        during = await http.get("/metrics")
        gate.set()
        assert (await holder).status_code == 200
        after = await http.get("/test/query")
        metrics = await http.get("/metrics")
    assert blocked.status_code == 503
    assert blocked.headers["retry-after"] == "1"
    assert blocked.json()["type"] == "urn:hotpath:problem:database-unavailable"
    assert elapsed < 1.0
    assert after.json() == {"one": 1}
    pool = 'db_client_connection_pool_name="hotpath"'
    assert f'db_client_connections_usage{{{pool},db_client_connection_state="used"}} 1.0' in (
        during.text
    )
    # At least the refused request's wait; a background poll may have timed out beside it.
    timeouts = f"db_client_connection_timeouts_total{{{pool}}} "
    (line,) = [line for line in metrics.text.splitlines() if line.startswith(timeouts)]
    assert float(line.removeprefix(timeouts)) >= 1
    assert f"db_client_connection_max{{{pool}}} 1.0" in metrics.text
    assert f'db_client_connections_usage{{{pool},db_client_connection_state="idle"}} 1.0' in (
        metrics.text
    )


async def test_pool_metrics_flush_into_the_shared_files_in_multiprocess_mode(
    settings: Settings,
) -> None:
    db = Database(await create_pool(replace(settings, db_pool_min=2)), acquire_timeout=1.0)
    try:
        metrics = PoolMetrics(db.pool, registry=None, multiprocess=True)
        exported = CollectorRegistry()
        for metric in (metrics._count, metrics._max, metrics._pending, metrics._timeouts):
            exported.register(metric)
        async with db.connection():
            metrics.flush()
            pool = {"db_client_connection_pool_name": "hotpath"}
            used = {**pool, "db_client_connection_state": "used"}
            idle = {**pool, "db_client_connection_state": "idle"}
            assert exported.get_sample_value("db_client_connections_usage", used) == 1
            assert exported.get_sample_value("db_client_connections_usage", idle) == 1
        db.pool.timeouts += 2
        metrics.flush()
        metrics.flush()  # deltas only: a second flush adds nothing
        assert exported.get_sample_value("db_client_connection_timeouts_total", pool) == 2
        assert exported.get_sample_value("db_client_connections_usage", used) == 0
        assert exported.get_sample_value("db_client_connection_max", pool) == settings.db_pool_max
    finally:
        await db.close()
