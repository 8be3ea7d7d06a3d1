"""Periodic housekeeping inside a worker: one task, stopped with the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


def run_every(seconds: float, job: Callable[[], None], *, name: str) -> asyncio.Task[None]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            job()

    return asyncio.create_task(loop(), name=name)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
