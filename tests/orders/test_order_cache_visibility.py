"""An order's stock change is visible to every process once the buyer has the 201: Redis holds
the products' tombstones (never their old copies) before the answer, so a process without a
local copy reads the new stock at once, and one with a copy drops it within a second (the
invalidation's pub/sub message). Guards the order's invalidation against landing after the
answer (checked: it fails when the invalidation is sent 50 ms after it, as a relay or another
channel heard later would). A task spawned at the answer can still pass here, its command
ahead of the test's on the one Redis client: in process that race is not seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.runtime.settings import Settings
from server.web.state import app_container
from tests.fixtures.orders import Shop
from tests.fixtures.support import client_for, lifespan


@pytest.fixture
async def replicas(
    settings: Settings, logger: FilteringBoundLogger
) -> AsyncIterator[list[tuple[HotpathApp, httpx.AsyncClient]]]:
    """Two more app instances (other processes) on the same database and Redis."""
    apps = [create_app(settings, logger=logger) for _ in range(2)]
    async with (
        lifespan(apps[0]),
        lifespan(apps[1]),
        client_for(apps[0]) as first,
        client_for(apps[1]) as second,
    ):
        yield [(apps[0], first), (apps[1], second)]


async def until_following(*apps: HotpathApp) -> None:
    deadline = time.monotonic() + 5
    while not all(app_container(app).catalog.cache.following for app in apps):
        assert time.monotonic() < deadline, "a process never followed invalidations"
        await asyncio.sleep(0.01)


async def test_every_process_sees_the_stock_an_order_took(
    app: HotpathApp,
    shop: Shop,
    replicas: list[tuple[HotpathApp, httpx.AsyncClient]],
) -> None:
    (cached_app, cached), (fresh_app, fresh) = replicas
    await until_following(app, cached_app, fresh_app)
    product = await shop.product(stock=5)
    path = f"/v1/products/{product}"
    for _ in range(2):  # the other process holds version 1 locally, and Redis holds it too
        before = await cached.get(path)
        assert before.json()["stock"] == 5
    redis = app_container(app).redis.client
    assert redis is not None
    cache = app_container(app).catalog.cache
    key = f"{cache.namespace}:product:{product}"
    stored = await redis.get(key)
    assert stored is not None
    assert stored.startswith("1\n")  # the old copy, version 1

    placed = await shop.order("visible-1", [{"product_id": product, "quantity": 2}])
    assert placed.status_code == 201, placed.text
    # The answer is out: Redis holds the write's tombstone (its version, no body), not the copy.
    assert await redis.get(key) == "2"
    # A process without a copy of its own reads the new stock at once.
    seen = await fresh.get(path)
    assert seen.json()["stock"] == 3
    assert seen.headers["etag"] != before.headers["etag"]
    # The buyer reads their own write on the process that took it.
    assert (await shop.http.get(path)).json()["stock"] == 3
    # The process that held a copy drops it within a second.
    started = time.monotonic()
    while (await cached.get(path)).json()["stock"] != 3:
        assert time.monotonic() - started < 1.0, "the other process still serves the old stock"
        await asyncio.sleep(0.02)
