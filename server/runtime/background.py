"""Work a worker runs beside its requests: periodic housekeeping, and tasks a request starts."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from structlog.typing import FilteringBoundLogger

from middleware.deadline import detach

T = TypeVar("T")


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


def spawn_detached(job: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task that outlives the request starting it, or serves other requests too: it keeps
    the request's log context but not its deadline (a task copies its creator's context)."""
    context = contextvars.copy_context()
    context.run(detach)
    return asyncio.create_task(job, name=name, context=context)
