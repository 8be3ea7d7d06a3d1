"""What the middleware stack costs over a bare Starlette handler, per request.

The ASGI app is called directly with a prebuilt scope, batches of requests per event-loop run,
so neither an HTTP client nor the loop's start-up hides the middleware's cost.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from bench.micro.stack_ceiling import FusedStack
from middleware import HttpMetrics, build_stack
from server.runtime.logs import configure_logging, request_line_logger

BATCH = 200
PAIR_ROUNDS = 60
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items/42",
    "raw_path": b"/items/42",
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"api.example.com"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"application/json"),
        (b"accept-encoding", b"gzip, br"),
    ],
    "client": ("10.0.0.7", 50123),
    "server": ("10.0.0.1", 8000),
}
REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def get_item(request: Request) -> Response:
    return ORJSONResponse({"id": request.path_params["id"], "name": "widget", "price": 999})


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/items/{id}", get_item)])


def full_stack(sink: BinaryIO, *, access_log: bool = True) -> ASGIApp:
    configure_logging("info", stream=sink)
    return build_stack(
        bare_app(),
        logger=request_line_logger(),  # the access log's writer, as create_app passes it
        access_log=access_log,
        metrics=HttpMetrics(registry=CollectorRegistry()),
        hsts=False,
        max_body_bytes=1 << 20,
        on_error=lambda exc: Response(status_code=500),
    )


async def _receive() -> Message:
    return REQUEST


async def _discard(message: Message) -> None:
    return None


def batch_runner(app: ASGIApp, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    async def batch() -> None:
        for _ in range(BATCH):
            await app(dict(SCOPE), _receive, _discard)

    def run() -> None:
        loop.run_until_complete(batch())

    run()  # Starlette builds its middleware stack on the first call
    return run


def test_the_timed_request_is_a_real_one(loop: asyncio.AbstractEventLoop) -> None:
    """The stack the bench times answers 200 with its headers and writes one JSON line."""
    sink = io.BytesIO()
    sent: list[Message] = []

    async def keep(message: Message) -> None:
        sent.append(message)

    loop.run_until_complete(full_stack(sink)(dict(SCOPE), _receive, keep))
    start, body = sent
    headers = dict(start["headers"])
    assert (start["status"], orjson.loads(body["body"])["id"]) == (200, "42")
    assert b"x-request-id" in headers
    assert b"content-security-policy" in headers
    line = orjson.loads(sink.getvalue())
    request_id = headers[b"x-request-id"].decode()
    assert (line["http.route"], line["http.request.id"]) == ("/items/{id}", request_id)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def devnull() -> Iterator[BinaryIO]:
    with open(os.devnull, "wb") as sink:
        yield sink


@pytest.mark.benchmark(group="middleware-stack")
def test_bare(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    benchmark.extra_info["requests_per_round"] = BATCH
    benchmark(batch_runner(bare_app(), loop))


@pytest.mark.benchmark(group="middleware-stack")
def test_full_stack(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, devnull: BinaryIO
) -> None:
    benchmark.extra_info["requests_per_round"] = BATCH
    benchmark(batch_runner(full_stack(devnull), loop))


def _per_request_us(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / BATCH * 1e6


def access_line_runner(sink: BinaryIO) -> Callable[[], None]:
    """The access log's line alone (RequestLines.info), with the fields a request's line carries."""
    configure_logging("info", stream=sink)
    logger = request_line_logger()

    def run() -> None:
        for _ in range(BATCH):
            logger.info(
                "http_request",
                method="GET",
                path="/items/42",
                route="/items/{id}",
                status=200,
                duration_ns=12_000,
                bytes=40,
                client_ip="10.0.0.7",
                user_agent="bench/1.0",
                error=None,
                request_id="0123456789abcdef0123456789abcdef",
                trace_id=None,
                span_id=None,
            )

    return run


def test_the_ceiling_does_the_stacks_jobs(loop: asyncio.AbstractEventLoop) -> None:
    """The fused lower bound answers with the same headers and writes the same line's fields."""
    real_sink, ceiling_sink = io.BytesIO(), io.BytesIO()
    answers: list[list[Message]] = [[], []]
    for app, sent in (
        (full_stack(real_sink), answers[0]),
        (FusedStack(bare_app(), stream=ceiling_sink), answers[1]),
    ):

        async def keep(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        loop.run_until_complete(app(dict(SCOPE), _receive, keep))
    real, ceiling = ({name for name, _ in sent[0]["headers"]} for sent in answers)
    assert real == ceiling
    assert [sent[1]["body"] for sent in answers] == [answers[0][1]["body"]] * 2
    real_line, ceiling_line = (
        orjson.loads(real_sink.getvalue()),
        orjson.loads(ceiling_sink.getvalue()),
    )
    assert set(real_line) == set(ceiling_line)


@pytest.mark.benchmark(group="middleware-ratio")
def test_overhead_ratio(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    devnull: BinaryIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Interleave the variants so machine noise hits them alike; print, never assert, the ratio.

    Beside the stack: its fused lower bound (stack_ceiling.py) and the access log's line on its
    own, to show what the goal leaves room for.
    """
    variants = {
        "bare": batch_runner(bare_app(), loop),
        "full_stack": batch_runner(full_stack(devnull), loop),
        "no_access_log": batch_runner(full_stack(devnull, access_log=False), loop),
        "ceiling": batch_runner(FusedStack(bare_app(), stream=devnull), loop),
        "access_line": access_line_runner(devnull),
    }

    def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(PAIR_ROUNDS):
            for name, run in variants.items():
                samples[name].append(_per_request_us(run))
        return {name: min(times) for name, times in samples.items()}

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    ratios = {
        name: best[name] / best["bare"] for name in ("full_stack", "no_access_log", "ceiling")
    }
    benchmark.extra_info.update(best, **{f"{name}_ratio": r for name, r in ratios.items()})
    with capsys.disabled():
        print(
            f"\nper request: bare {best['bare']:.2f} us, full stack {best['full_stack']:.2f} us"
            f" (ratio {ratios['full_stack']:.2f}, goal <= 1.25), without access log"
            f" {best['no_access_log']:.2f} us (ratio {ratios['no_access_log']:.2f});"
            f" fused lower bound {best['ceiling']:.2f} us (ratio {ratios['ceiling']:.2f});"
            f" the access log's line alone {best['access_line']:.2f} us"
            f" (the goal leaves {best['bare'] * 0.25:.2f} us for all five layers)"
        )
