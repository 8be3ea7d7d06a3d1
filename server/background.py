"""Periodic housekeeping inside a worker: one task, stopped with the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from structlog.typing import FilteringBoundLogger


def run_every(seconds: float, job: Callable[[], None], *, name: str) -> asyncio.Task[None]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            job()

    return asyncio.create_task(loop(), name=name)


def repeat_async(
    seconds: float,
    job: Callable[[], Awaitable[None]],
    *,
    name: str,
    logger: FilteringBoundLogger,
) -> asyncio.Task[None]:
    """Like run_every for I/O jobs: a failure is logged and the next round runs anyway."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception as exc:
                logger.warning("background_job_failed", job=name, error=type(exc).__name__)

    return asyncio.create_task(loop(), name=name)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
