from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.deadline import time_left
from middleware.in_flight import InFlightLimitMiddleware, Overloaded

WAIT = 5  # a guard against hanging, never a timing assertion


def on_error(exc: Exception) -> ASGIApp:
    assert isinstance(exc, Overloaded)
    return JSONResponse(
        {"overloaded": True},
        status_code=503,
        headers={"retry-after": str(exc.retry_after)},
    )


class Blocking:
    """A Starlette app whose /work requests wait for `release`; `entered` counts them in."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.all_in = asyncio.Event()
        self.expected = 0

        async def work(request: Request) -> Response:
            self.entered += 1
            if self.entered == self.expected:
                self.all_in.set()
            await self.release.wait()
            return PlainTextResponse("done")

        async def livez(request: Request) -> Response:
            return PlainTextResponse("alive")

        self.app = Starlette(routes=[Route("/work", work), Route("/livez", livez)])


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_past_the_limit_is_refused_at_once_and_a_slot_frees_after() -> None:
    blocking = Blocking()
    blocking.expected = 2
    limited = InFlightLimitMiddleware(blocking.app, limit=2, retry_after=7, on_error=on_error)
    async with client(limited) as http:
        first = asyncio.create_task(http.get("/work"))
        second = asyncio.create_task(http.get("/work"))
        async with asyncio.timeout(WAIT):
            await blocking.all_in.wait()
        assert limited.in_flight == 2

        async with asyncio.timeout(WAIT):  # answered while the first two still wait
            refused = await http.get("/work")
        assert (refused.status_code, refused.json()) == (503, {"overloaded": True})
        assert refused.headers["retry-after"] == "7"
        assert not first.done()
        assert not second.done()
        assert (blocking.entered, limited.in_flight) == (2, 2)

        blocking.release.set()
        async with asyncio.timeout(WAIT):
            answers = await asyncio.gather(first, second)
        assert [answer.text for answer in answers] == ["done", "done"]
        assert limited.in_flight == 0

        again = await http.get("/work")
    assert (again.status_code, again.text) == (200, "done")
    assert limited.in_flight == 0


async def test_exempt_paths_pass_while_saturated_and_are_not_counted() -> None:
    blocking = Blocking()
    blocking.expected = 1
    limited = InFlightLimitMiddleware(blocking.app, limit=1, on_error=on_error)
    async with client(limited) as http:
        busy = asyncio.create_task(http.get("/work"))
        async with asyncio.timeout(WAIT):
            await blocking.all_in.wait()
        assert (await http.get("/work")).status_code == 503
        alive = await http.get("/livez")
        assert (alive.status_code, alive.text) == (200, "alive")
        assert limited.in_flight == 1
        blocking.release.set()
        async with asyncio.timeout(WAIT):
            assert (await busy).status_code == 200
    assert limited.in_flight == 0


async def test_custom_exempt_paths_replace_the_default() -> None:
    blocking = Blocking()
    blocking.expected = 1
    limited = InFlightLimitMiddleware(
        blocking.app, limit=1, on_error=on_error, exempt_paths=frozenset({"/healthz"})
    )
    async with client(limited) as http:
        busy = asyncio.create_task(http.get("/work"))
        async with asyncio.timeout(WAIT):
            await blocking.all_in.wait()
        assert (await http.get("/livez")).status_code == 503
        blocking.release.set()
        async with asyncio.timeout(WAIT):
            await busy


def scope(path: str = "/work") -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": []}


async def receive() -> Message:
    return {"type": "http.disconnect"}


async def send(message: Message) -> None:
    return None


async def test_an_exception_releases_the_slot() -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    limited = InFlightLimitMiddleware(crashing, limit=1, on_error=on_error)
    for _ in range(3):  # a leaked slot would refuse the second call instead of raising
        with pytest.raises(RuntimeError, match="boom"):
            await limited(scope(), receive, send)
        assert limited.in_flight == 0


async def test_a_cancelled_request_releases_the_slot() -> None:
    started = asyncio.Event()

    async def hanging(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.Event().wait()

    limited = InFlightLimitMiddleware(hanging, limit=1, on_error=on_error)

    async def request() -> None:
        await limited(scope(), receive, send)

    task = asyncio.create_task(request())
    async with asyncio.timeout(WAIT):
        await started.wait()
    assert limited.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limited.in_flight == 0


async def test_an_awaitable_never_awaited_takes_no_slot() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    limited = InFlightLimitMiddleware(app, limit=1, on_error=on_error)
    abandoned: Any = limited(scope(), receive, send)
    abandoned.close()
    assert limited.in_flight == 0
    await limited(scope(), receive, send)
    assert limited.in_flight == 0


async def test_exempt_and_non_http_scopes_get_the_inner_awaitable() -> None:
    handed: list[Awaitable[None]] = []

    def app(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        awaitable = asyncio.sleep(0)
        handed.append(awaitable)
        return awaitable

    limited = InFlightLimitMiddleware(app, limit=1, on_error=on_error)
    for request in (scope("/livez"), scope("/metrics"), {"type": "lifespan"}):
        awaitable = limited(request, receive, send)
        assert awaitable is handed[-1]
        await awaitable
    assert limited.in_flight == 0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": 1, "retry_after": -1}, "retry_after"),
        ({"limit": 1, "retry_after": False}, "retry_after"),
        ({"limit": 1, "exempt_paths": "/livez"}, "exempt_paths"),
        ({"limit": 1, "exempt_paths": frozenset({"livez"})}, "exempt_paths"),
    ],
)
def test_rejects_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InFlightLimitMiddleware(Starlette(), on_error=on_error, **options)


def test_on_error_must_be_callable() -> None:
    bad: Any = "not callable"
    with pytest.raises(TypeError, match="on_error"):
        InFlightLimitMiddleware(Starlette(), limit=1, on_error=bad)


async def test_each_refused_request_is_reported_to_on_shed() -> None:
    blocking = Blocking()
    blocking.expected = 1
    shed: list[None] = []
    limited = InFlightLimitMiddleware(
        blocking.app, limit=1, on_error=on_error, on_shed=lambda: shed.append(None)
    )
    async with client(limited) as http:
        first = asyncio.create_task(http.get("/work"))
        async with asyncio.timeout(WAIT):
            await blocking.all_in.wait()
        assert len(shed) == 0
        for _ in range(3):
            assert (await http.get("/work")).status_code == 503
        assert (await http.get("/livez")).status_code == 200
        blocking.release.set()
        async with asyncio.timeout(WAIT):
            assert (await first).status_code == 200
    assert len(shed) == 3


async def test_an_admitted_request_gets_its_deadline_as_it_is_admitted() -> None:
    seen: dict[str, float | None] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen[scope["path"]] = time_left()
        await PlainTextResponse("ok")(scope, receive, send)

    limited = InFlightLimitMiddleware(app, limit=1, on_error=on_error, deadline=30)
    bare = InFlightLimitMiddleware(app, limit=1, on_error=on_error)
    # Each request in a task (a context) of its own, as the server runs them.
    async with client(limited) as http:
        assert (await asyncio.create_task(http.get("/work"))).status_code == 200
        # Exempt: not counted, yet timed.
        assert (await asyncio.create_task(http.get("/livez"))).status_code == 200
    async with client(bare) as http:
        assert (await asyncio.create_task(http.get("/other"))).status_code == 200
    assert 29 < cast(float, seen["/work"]) <= 30
    assert 29 < cast(float, seen["/livez"]) <= 30
    assert seen["/other"] is None  # no deadline here: none set


async def test_a_refused_request_gets_no_deadline() -> None:
    blocking = Blocking()
    blocking.expected = 1
    limited = InFlightLimitMiddleware(blocking.app, limit=1, on_error=on_error, deadline=30)
    refused: dict[str, float | None] = {}

    def render(exc: Exception) -> ASGIApp:
        refused["left"] = time_left()
        return on_error(exc)

    limited.on_error = render
    async with client(limited) as http:
        first = asyncio.create_task(http.get("/work"))
        await asyncio.wait_for(blocking.all_in.wait(), WAIT)
        second = await asyncio.create_task(http.get("/work"))
        blocking.release.set()
        assert (await asyncio.wait_for(first, WAIT)).status_code == 200
    assert second.status_code == 503
    assert refused == {"left": None}


@pytest.mark.parametrize("bad", [-1, True, "5"])
def test_a_deadline_must_be_a_non_negative_number(bad: Any) -> None:
    with pytest.raises(ValueError, match="deadline"):
        InFlightLimitMiddleware(Starlette(), limit=1, on_error=on_error, deadline=bad)
