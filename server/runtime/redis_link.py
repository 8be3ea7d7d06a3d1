"""The Redis connection, or its absence.

With no Redis configured (or none answering) hotpath runs in single-node mode: callers see
``client is None`` and use their in-process structures. A configured Redis that is down at
start-up is retried in the background, so the process upgrades by itself when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import coredis
from structlog.typing import FilteringBoundLogger

from server.runtime.redis_client import RedisClient, is_cluster_url, make_client
from server.runtime.resp import ServerAddress
from server.runtime.resp_commands import RespCommands

_RETRY_SECONDS = 2.0
_REDISCOVER_AFTER = 2  # failed probes in a row


class RedisLink:
    def __init__(self, url: str | None, *, timeout: float, logger: FilteringBoundLogger) -> None:
        self.url = url
        self.timeout = timeout
        self.logger = logger
        self.client: RedisClient | None = None
        # One server only: the catalog's tombstones go through a connection of hotpath's own,
        # made as the client's (decision 0015); set and closed with the client.
        self.commands: RespCommands | None = None
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        # A cluster: set after failed probes, so that run() opens a client that discovers the
        # topology afresh. coredis' client keeps a failed-over master among the primaries
        # that PING goes to, so the probe would fail forever on a cluster that has healed.
        self._rediscover = asyncio.Event()
        self._failed_pings = 0

    @property
    def configured(self) -> bool:
        return self.url is not None

    @property
    def cluster(self) -> bool:
        """A Redis Cluster (server/runtime/redis_client.py): sharded pub/sub for fan-out."""
        return self.url is not None and is_cluster_url(self.url)

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.client is not None

    async def ping(self) -> bool:
        client = self.client
        if client is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        except Exception:
            self._failed_pings += 1
            if self.cluster and self._failed_pings >= _REDISCOVER_AFTER:
                self._rediscover.set()
            return False
        self._failed_pings = 0
        return True

    async def _hold(self) -> None:
        """Until stopped or, on a cluster, until failed probes ask for a fresh topology."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, self._rediscover)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self._rediscover.is_set() and not self._stop.is_set():
            self._rediscover.clear()
            self._failed_pings = 0
            self.logger.warning("redis_rediscovering", detail="probes failed: a new cluster client")

    async def run(self) -> None:
        """Hold the client open (coredis wants ``async with``), reconnecting after failures."""
        assert self.url is not None
        announced_down = False
        while not self._stop.is_set():
            client = make_client(self.url, timeout=self.timeout)
            try:
                async with client:
                    await client.ping()
                    if isinstance(client, coredis.Redis):
                        self.commands = RespCommands(ServerAddress.of(client))
                        with contextlib.suppress(Exception):  # else the first command connects
                            async with asyncio.timeout(self.timeout):
                                await self.commands.connect()
                    self.client = client
                    self._connected.set()
                    self.logger.info("redis_connected", mode="shared", cluster=self.cluster)
                    announced_down = False
                    await self._hold()
            except Exception as exc:
                self.client = None
                if not announced_down:
                    self.logger.warning(
                        "redis_unavailable",
                        mode="single-node",
                        detail="cache, limits and revocation fan-out use in-process structures",
                        error=type(exc).__name__,
                    )
                    announced_down = True
                self._connected.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _RETRY_SECONDS)
            finally:
                self.client = None
                if self.commands is not None:
                    self.commands.close()
                    self.commands = None

    def stop(self) -> None:
        self._stop.set()


@contextlib.asynccontextmanager
async def open_redis(
    url: str | None, *, timeout: float, logger: FilteringBoundLogger
) -> AsyncIterator[RedisLink]:
    link = RedisLink(url, timeout=timeout, logger=logger)
    if url is None:
        logger.info(
            "redis_not_configured",
            mode="single-node",
            detail="cache, limits and revocation fan-out use in-process structures",
        )
        yield link
        return
    task = asyncio.create_task(link.run(), name="redis-link")
    await link.wait_connected(timeout * 4)
    try:
        yield link
    finally:
        link.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)
