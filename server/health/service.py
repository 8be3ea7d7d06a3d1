"""Liveness and readiness: what a load balancer or orchestrator asks before sending traffic."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from server.db.database import Database
from server.db.migrate import MigrationError
from server.db.migrate import status as migration_status
from server.runtime.redis_link import RedisLink
from server.web.errors import ServiceUnavailable

DRAIN_FILE_ENV = "HOTPATH_DRAIN_FILE"
# Set by `python -m server serve`: each worker leaves a file there once its start-up is done,
# so serve announces the server only when a worker of its own (not another process sharing
# the port) has started.
STARTED_DIR_ENV = "HOTPATH_STARTED_DIR"


def mark_started() -> None:
    directory = os.environ.get(STARTED_DIR_ENV)
    if directory:
        (Path(directory) / str(os.getpid())).touch()


@dataclass(slots=True)
class DrainState:
    """Set when the process is going away; /readyz answers 503 from then on.

    ``python -m server serve`` creates the drain file on SIGTERM, so every granian worker sees
    the same flag during the drain period before the server stops accepting connections.
    """

    draining: bool = False
    drain_file: Path | None = field(
        default_factory=lambda: Path(p) if (p := os.environ.get(DRAIN_FILE_ENV)) else None
    )

    def is_draining(self) -> bool:
        return self.draining or (self.drain_file is not None and self.drain_file.exists())


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


class HealthService:
    def __init__(
        self,
        db: Database,
        redis: RedisLink,
        *,
        drain: DrainState,
        migrations_dir: Path,
        redis_required: bool,
        timeout: float,
    ) -> None:
        self.db = db
        self.redis = redis
        self.drain = drain
        self.migrations_dir = migrations_dir
        self.redis_required = redis_required
        self.timeout = timeout
        self._gates: dict[str, Callable[[], bool]] = {}
        self._observers: list[Callable[[Readiness], None]] = []

    def add_gate(self, name: str, is_ready: Callable[[], bool]) -> None:
        """Another component that must be ready before traffic (e.g. the revocation list)."""
        self._gates[name] = is_ready

    def add_observer(self, observe: Callable[[Readiness], None]) -> None:
        """Told every readiness found (the metrics keep the last one)."""
        self._observers.append(observe)

    async def probe(self) -> None:
        """A readiness check for the observers alone, as if /readyz had been asked."""
        await self.readiness()

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        ready = True
        if self.drain.is_draining():
            checks["process"] = "draining"
            ready = False
        db_state = await self._database()
        checks["postgres"], checks["migrations"] = db_state
        ready = ready and db_state == ("ok", "current")
        for name, is_ready in self._gates.items():
            ready_now = is_ready()
            checks[name] = "ok" if ready_now else "loading"
            ready = ready and ready_now
        if self.redis.configured:
            if await self.redis.ping():
                checks["redis"] = "ok"
            else:
                checks["redis"] = "unavailable"
                ready = ready and not self.redis_required
        else:
            checks["redis"] = "single-node"
        found = Readiness(ready, checks)
        for observe in self._observers:
            observe(found)
        return found

    async def _database(self) -> tuple[str, str]:
        try:
            async with asyncio.timeout(self.timeout * 2), self.db.connection() as conn:
                state = await migration_status(conn, self.migrations_dir)
        except (ServiceUnavailable, TimeoutError, OSError, asyncpg.PostgresError):
            return "unavailable", "unknown"
        except MigrationError:
            return "ok", "unreadable"
        if state.mismatched:
            return "ok", "mismatched"
        return "ok", "current" if state.current else "pending"
