"""Single-node mode without Redis, and recovery when a Redis comes back."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
from collections.abc import Iterator

import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from server.runtime.redis_link import open_redis
from tests.fixtures.support import free_port


def events(stream: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def test_no_redis_configured_is_single_node_and_says_so(
    logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    async with open_redis(None, timeout=0.2, logger=logger) as link:
        assert link.client is None
        assert not link.configured
        assert not await link.ping()
    (line,) = [e for e in events(log_stream) if e["message"] == "redis_not_configured"]
    assert line["mode"] == "single-node"


@pytest.fixture
def redis_port() -> Iterator[int]:
    port = free_port()
    yield port
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, check=False
    )


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
async def test_unreachable_redis_degrades_then_recovers(
    logger: FilteringBoundLogger, log_stream: io.BytesIO, redis_port: int
) -> None:
    url = f"redis://127.0.0.1:{redis_port}/0"
    async with open_redis(url, timeout=0.2, logger=logger) as link:
        assert link.configured
        assert link.client is None
        assert not await link.ping()
        assert any(e["message"] == "redis_unavailable" for e in events(log_stream))
        await asyncio.to_thread(
            subprocess.run,
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(60):
            if await link.ping():
                break
            await asyncio.sleep(0.1)
        assert await link.ping()
        assert link.client is not None
        assert await link.client.set("hotpath:test", "1")
    assert any(e["message"] == "redis_connected" for e in events(log_stream))
