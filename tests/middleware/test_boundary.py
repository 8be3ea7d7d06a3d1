"""The error boundary's layer (middleware/boundary.py) and the in-flight cap's layer running the
same boundary in the coroutine that holds the slot: what reaches ``rescue``, what is sent, the
headers an inner layer leaves under ANSWER_HEADERS, and the slot freed however the app ends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.boundary import BoundaryMiddleware
from middleware.in_flight import InFlightLimitMiddleware
from middleware.types import ANSWER_HEADERS

START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]}
LIMITS = ((b"ratelimit", b"r=5"),)


class Known(Exception):
    pass


class Rescuer:
    """A rescue that answers Known with a 418 (when not started) and raises anything else."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    async def __call__(
        self, exc: Exception, scope: Scope, receive: Receive, send: Send, started: bool
    ) -> None:
        self.seen.append((type(exc).__name__, started))
        if not started:
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        if not isinstance(exc, Known):
            raise exc


def app_that(*, raises: type[Exception] | None, after_start: bool = False) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ANSWER_HEADERS] = LIMITS  # as the rate limit layer leaves its headers
        if raises is not None and not after_start:
            raise raises("boom")
        await send(dict(START, headers=list(START["headers"])))
        if raises is not None:
            raise raises("boom")
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def layers(inner: ASGIApp, rescue: Rescuer) -> list[Callable[[], Any]]:
    """The boundary as a layer, and the cap's layer running it (/livez: its exempt path)."""
    return [
        lambda: BoundaryMiddleware(inner, rescue=rescue),
        lambda: InFlightLimitMiddleware(inner, limit=2, on_error=_no_refusal, rescue=rescue),
    ]


def _no_refusal(exc: Exception) -> ASGIApp:
    raise AssertionError(f"refused: {exc}")


def serve(layer: Any, path: str = "/work") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request"}

    async def keep(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        answer: Awaitable[None] = layer({"type": "http", "path": path}, receive, keep)
        await answer

    asyncio.run(call())
    return sent


@pytest.mark.parametrize("path", ["/work", "/livez"])
@pytest.mark.parametrize("kind", ["boundary", "cap"])
def test_headers_left_by_an_inner_layer_go_on_the_answers_start(kind: str, path: str) -> None:
    rescue = Rescuer()
    layer = layers(app_that(raises=None), rescue)[kind == "cap"]()
    start, body = serve(layer, path)
    assert start["headers"] == [(b"a", b"1"), *LIMITS]
    assert body["body"] == b"ok"
    assert rescue.seen == []


@pytest.mark.parametrize("path", ["/work", "/livez"])
@pytest.mark.parametrize("kind", ["boundary", "cap"])
def test_a_known_error_before_the_start_is_rescued_without_inner_headers(
    kind: str, path: str
) -> None:
    rescue = Rescuer()
    layer = layers(app_that(raises=Known), rescue)[kind == "cap"]()
    start, _ = serve(layer, path)
    # Sent through the raw send: an error answer carries no header of a layer inside.
    assert (start["status"], start["headers"]) == (418, [])
    assert rescue.seen == [("Known", False)]
    if kind == "cap":
        assert layer.in_flight == 0


@pytest.mark.parametrize("kind", ["boundary", "cap"])
def test_a_bug_after_the_start_is_told_started_and_propagates(kind: str) -> None:
    rescue = Rescuer()
    layer = layers(app_that(raises=RuntimeError, after_start=True), rescue)[kind == "cap"]()
    with pytest.raises(RuntimeError, match="boom"):
        serve(layer)
    assert rescue.seen == [("RuntimeError", True)]
    if kind == "cap":
        assert layer.in_flight == 0


def test_the_cap_runs_the_boundary_in_its_own_coroutine() -> None:
    # One coroutine frame between the cap's caller and the app: the app is awaited by the
    # cap's coroutine itself, with the boundary's wrapper as its send.
    frames: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        frame = sys._getframe()
        while frame.f_code.co_name != "call":
            frames.append(frame.f_code.co_name)
            frame = frame.f_back  # type: ignore[assignment]
        await send(dict(START))

    async def call() -> None:
        cap = InFlightLimitMiddleware(inner, limit=1, on_error=_no_refusal, rescue=Rescuer())

        async def send(message: Message) -> None:
            pass

        async def receive() -> Message:
            return {"type": "http.request"}

        await cap({"type": "http", "path": "/work"}, receive, send)

    asyncio.run(call())
    assert frames == ["inner", "_counted"]


def test_other_scopes_pass_untouched() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def call() -> None:
        async def receive() -> Message:
            return {"type": "lifespan.startup"}

        async def send(message: Message) -> None:
            pass

        await BoundaryMiddleware(inner, rescue=Rescuer())({"type": "lifespan"}, receive, send)

    asyncio.run(call())
    assert seen == [{"type": "lifespan"}]


def test_rescue_must_be_callable() -> None:
    with pytest.raises(TypeError):
        BoundaryMiddleware(app_that(raises=None), rescue=None)  # type: ignore[arg-type]
