"""Test helpers: run an ASGI app's lifespan around a block, and talk to it with httpx."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def until(condition: Callable[[], bool], *, limit: float) -> float:
    """Seconds until `condition()` holds, polled every 2 ms; AssertionError after `limit`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - start


@asynccontextmanager
async def lifespan(app: ASGIApp, *, timeout: float = 30) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol the way granian does."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    async def run() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(run())
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), timeout)
    if started["type"] != "lifespan.startup.complete":
        task.cancel()
        raise RuntimeError(f"lifespan start-up failed: {started.get('message')}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), timeout)
        await asyncio.wait_for(task, timeout)


def task_per_request(app: ASGIApp) -> ASGIApp:
    """Run each request in a task of its own, as granian does: what a request sets in its
    context (its deadline, its log fields) then ends with it instead of leaking into the test."""

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        async def one() -> None:
            await app(scope, receive, send)

        await asyncio.create_task(one())

    return run


@asynccontextmanager
async def client_for(
    app: ASGIApp,
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    raise_app_exceptions: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=task_per_request(app), client=client, raise_app_exceptions=raise_app_exceptions
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayRedis:
    """A throwaway redis-server on a free port (never the shared one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise AssertionError("throwaway redis did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def at_once_in_processes(work: Callable[[], object], count: int = 8) -> list[object]:
    """What ``work()`` returned in each of ``count`` forked processes released together (a
    race, as granian workers starting side by side run one); every process must exit 0."""
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(count), context.Queue()

    def run() -> None:
        start.wait(timeout=20)
        results.put(work())

    processes = [context.Process(target=run) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0] * count
    return [results.get(timeout=5) for _ in range(count)]


PROBLEM = "urn:hotpath:problem:"


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None, *, case: object = None
) -> None:
    """An RFC 9457 problem document with this status (and problem type, when given)."""
    assert response.status_code == status, (case, response.text)
    media = response.headers["content-type"]
    assert media.startswith("application/problem+json"), (case, media)
    if slug is not None:
        assert response.json()["type"] == PROBLEM + slug, (case, response.text)


def problem_type(response: httpx.Response) -> str:
    """The slug of a problem document's type (asserting that it is one)."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    kind: str = response.json()["type"]
    return kind.removeprefix(PROBLEM)
