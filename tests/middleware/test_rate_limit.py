"""RateLimitMiddleware with fake collaborators: a request admitted at once (``admit``), a
decision made at once, one that needs the shared store (``wait``), a denial, and requests it
leaves alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, NamedTuple

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.rate_limit import RateLimited, RateLimitMiddleware, rate_limit_layer
from middleware.types import ANSWER_HEADERS


class Decision(NamedTuple):
    allowed: bool
    remaining: int


class Fakes:
    def __init__(self, *, at_once: bool, allowed: bool = True, admitted: bool = False) -> None:
        self.at_once, self.allowed, self.admitted = at_once, allowed, admitted
        self.calls: list[str] = []
        self.refused: list[RateLimited] = []

    def classify(self, scope: Scope) -> tuple[str, Any] | None:
        return None if scope["path"] == "/livez" else ("user:7", "read")

    def admit(self, key: str, policy: Any) -> tuple[tuple[bytes, bytes], ...] | None:
        self.calls.append(f"admit {key} {policy}")
        return ((b"ratelimit", b"r=5"), (b"ratelimit-policy", b"q=9")) if self.admitted else None

    def check(self, key: str, policy: Any) -> Decision | None:
        self.calls.append(f"check {key} {policy}")
        return Decision(self.allowed, 4) if self.at_once else None

    async def wait(self, key: str, policy: Any) -> Decision:
        self.calls.append(f"wait {key} {policy}")
        await asyncio.sleep(0)
        return Decision(self.allowed, 3)

    def headers(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        return [(b"ratelimit", b"r=%d" % decision.remaining)]

    def on_error(self, exc: Exception) -> ASGIApp:
        assert isinstance(exc, RateLimited)
        self.refused.append(exc)

        async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 429, "headers": exc.headers})
            await send({"type": "http.response.body", "body": b""})

        return refuse


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(
    fakes: Fakes, path: str = "/v1/products", kind: str = "http", factory: Any = RateLimitMiddleware
) -> list[Message]:
    layer = factory(
        app,
        classify=fakes.classify,
        admit=fakes.admit,
        check=fakes.check,
        wait=fakes.wait,
        headers=fakes.headers,
        on_error=fakes.on_error,
    )
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request"}

    async def keep(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        answer: Awaitable[None] = layer({"type": kind, "path": path}, receive, keep)
        await answer

    asyncio.run(call())
    return sent


def test_an_admitted_request_gets_admits_headers_and_no_decision() -> None:
    fakes = Fakes(at_once=True, admitted=True)
    start, body = serve(fakes)
    assert start["headers"] == [(b"a", b"1"), (b"ratelimit", b"r=5"), (b"ratelimit-policy", b"q=9")]
    assert body["body"] == b"ok"
    assert fakes.calls == ["admit user:7 read"]  # neither check nor wait is asked


def test_a_decision_made_at_once_adds_its_headers_after_the_apps() -> None:
    fakes = Fakes(at_once=True)
    start, body = serve(fakes)
    assert (start["status"], start["headers"]) == (200, [(b"a", b"1"), (b"ratelimit", b"r=4")])
    assert body["body"] == b"ok"
    assert fakes.calls == ["admit user:7 read", "check user:7 read"]  # wait is never asked


def test_a_decision_check_cannot_make_is_awaited_from_wait() -> None:
    fakes = Fakes(at_once=False)
    start, _ = serve(fakes)
    assert start["headers"] == [(b"a", b"1"), (b"ratelimit", b"r=3")]
    assert fakes.calls == ["admit user:7 read", "check user:7 read", "wait user:7 read"]


@pytest.mark.parametrize("at_once", [True, False])
def test_a_denial_is_answered_by_on_error_with_the_headers(at_once: bool) -> None:
    fakes = Fakes(at_once=at_once, allowed=False)
    start, body = serve(fakes)
    assert (start["status"], body["body"]) == (429, b"")
    assert fakes.refused[0].headers == start["headers"] == [(b"ratelimit", b"r=%d" % (3 + at_once))]


def test_unlimited_requests_and_other_scopes_pass_untouched() -> None:
    fakes = Fakes(at_once=True)
    start, _ = serve(fakes, path="/livez")
    assert start["headers"] == [(b"a", b"1")]
    assert serve(fakes, kind="websocket")[0]["headers"] == [(b"a", b"1")]
    assert fakes.calls == []


def test_collaborators_must_be_callable() -> None:
    fakes = Fakes(at_once=True)
    with pytest.raises(TypeError, match="wait"):
        RateLimitMiddleware(
            app,
            classify=fakes.classify,
            admit=fakes.admit,
            check=fakes.check,
            wait=None,  # type: ignore[arg-type]
            headers=fakes.headers,
            on_error=fakes.on_error,
        )


@pytest.mark.parametrize("admitted", [True, False])
def test_the_layer_the_stack_holds_is_the_middlewares_bound_call(admitted: bool) -> None:
    # A bound method, which the layer outside calls specialized; an instance's call is not.
    layer = rate_limit_layer(
        app,
        classify=Fakes(at_once=True).classify,
        admit=Fakes(at_once=True).admit,
        check=Fakes(at_once=True).check,
        wait=Fakes(at_once=True).wait,
        headers=Fakes(at_once=True).headers,
        on_error=Fakes(at_once=True).on_error,
    )
    assert isinstance(getattr(layer, "__self__", None), RateLimitMiddleware)
    assert serve(Fakes(at_once=True, admitted=admitted), factory=rate_limit_layer) == serve(
        Fakes(at_once=True, admitted=admitted)
    )


@pytest.mark.parametrize("at_once", [True, False])
def test_with_a_boundary_outside_the_headers_go_to_its_wrapper_not_a_wrapper_of_our_own(
    at_once: bool,
) -> None:
    fakes = Fakes(at_once=at_once, admitted=at_once)
    layer = RateLimitMiddleware(
        app,
        classify=fakes.classify,
        admit=fakes.admit,
        check=fakes.check,
        wait=fakes.wait,
        headers=fakes.headers,
        on_error=fakes.on_error,
    )
    sent: list[Message] = []
    scope: dict[str, Any] = {"type": "http", "path": "/v1/products", ANSWER_HEADERS: None}

    async def receive() -> Message:
        return {"type": "http.request"}

    async def keep(message: Message) -> None:
        sent.append(message)

    asyncio.run(layer(scope, receive, keep))  # type: ignore[arg-type]
    # The app's own headers only: the boundary's wrapper adds the scope's on the way out.
    assert sent[0]["headers"] == [(b"a", b"1")]
    expected = ((b"ratelimit", b"r=5"), (b"ratelimit-policy", b"q=9")) if at_once else None
    assert scope[ANSWER_HEADERS] == (expected or [(b"ratelimit", b"r=3")])
