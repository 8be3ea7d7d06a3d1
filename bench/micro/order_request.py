"""``python -m bench.micro.order_request``: what placing an order costs hotpath's process, in
process, against the order ceiling's in the same run.

hotpath's whole app as ``bench.micro.app_request`` builds it (make bench's production
configuration, its lifespan running on a fresh bench database, PostgreSQL and Redis real) and
the order ceiling's ASGI callable (``bench/ceilings/order_place.py``, on its own pool of the
same database) are each called directly with a prebuilt scope: ``POST /v1/orders`` of one
random product, quantity 1, a fresh Idempotency-Key per request, as ``bench/load/order_place.lua``
sends it. ``--against edge`` puts the order's edge ceiling (``bench/ceilings/order_edge.py``:
hotpath's jobs for the order fused into one callable around the same transaction) in the
ceiling's place, so that the difference is hotpath's structure alone. Rounds interleave the
two; each round's figure is this process's CPU time (user + system, ``time.process_time``) per
order, so PostgreSQL's and Redis' own work is not counted, as the served bench counts only the
server's process tree. Printed: the median and best of
the rounds for each, and the median of the per-round ratios.

``--concurrency N`` keeps N orders in flight at once, as make bench's wrk does with its 16
connections (each in a task with a fresh context, as a server's connection): what is shared
between concurrent orders (a Redis call for several, say) shows only then.

``--profile hotpath`` prints a cProfile of hotpath's orders; ``--only hotpath --requests N``
(or ``--only ceiling``, ``--only edge``)
just places N orders, after the warm-up, inside one ``functools.reduce`` call, so that callgrind
counts those orders' instructions only (repeatable on a busy box; a run of N less a run of M,
over N - M, is an order's)::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \
        .venv/bin/python -m bench.micro.order_request --only hotpath --requests 480 \
        --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import functools
import os
import pstats
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

import httpx
from starlette.types import ASGIApp, Message
from structlog.typing import FilteringBoundLogger

from bench.ceilings import edge_jobs, order_edge
from bench.ceilings import order_place as ceiling
from bench.micro.app_request import _scope
from bench.suite import setup
from bench.suite.state import Options, Run, hotpath_env
from server.app import create_app
from server.runtime.logs import configure_logging
from server.runtime.settings import load_settings
from tests.fixtures.support import lifespan

BATCH = 100
PRODUCTS = 1000


class _Check:
    """A send that keeps the status, so a wrong answer stops the measurement."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


Batch = Callable[[], Coroutine[Any, Any, None]]


def _batch(
    app: Callable[..., Awaitable[None]], bearer: bytes, count: int = BATCH, concurrency: int = 1
) -> Batch:
    check = _Check()

    async def order() -> None:
        body = b'{"items":[{"product_id":%d,"quantity":1}]}' % random.randint(1, PRODUCTS)

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = _scope(
            "/v1/orders",
            [
                (b"user-agent", b"wrk"),
                (b"authorization", bearer),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"idempotency-key", secrets.token_hex(16).encode()),
            ],
        )
        scope["method"] = "POST"
        await app(scope, receive, check)

    async def lane(orders: int) -> None:
        for _ in range(orders):
            await order()

    async def run() -> None:
        check.statuses.clear()
        # As wrk's connections: each lane places its orders one after the other, in a task of
        # its own with a fresh context, as a server's connection (a deadline the app sets, or
        # the login's, must not carry over to the ceiling's requests on the same pool).
        share, extra = divmod(count, concurrency)
        lanes = [
            asyncio.create_task(lane(share + (n < extra)), context=contextvars.Context())
            for n in range(concurrency)
        ]
        await asyncio.gather(*lanes)
        if set(check.statuses) != {201}:
            raise RuntimeError(f"orders answered {sorted(set(check.statuses))}")

    return run


async def _measure(batches: dict[str, Batch], rounds: int) -> dict[str, list[float]]:
    per_round: dict[str, list[float]] = {name: [] for name in batches}
    for n in range(rounds):
        names = list(batches)
        if n % 2:
            names.reverse()  # neither side always runs right after the other
        for name in names:
            start = time.process_time()
            await batches[name]()
            per_round[name].append((time.process_time() - start) / BATCH * 1e6)
    return per_round


@asynccontextmanager
async def _running(
    url: str, account: setup.Account, lanes: int, other: Callable[..., Awaitable[None]]
) -> AsyncIterator[tuple[Callable[..., Awaitable[None]], bytes]]:
    """hotpath's app and ``other`` (the ceiling's or the edge ceiling's: they share one pool,
    so only one runs), their lifespans running; yields hotpath's app and the account's bearer
    token."""
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-order-request-"))
    os.environ.update(hotpath_env(Run(Options(), workdir), url))
    os.environ["CEILING_DATABASE_URL"] = url
    # Under valgrind the login's argon2 hash outlasts the default 10 s deadline, and 16 orders
    # in flight the 1 s pool wait, the 5 s statement limit and the 0.5 s Redis limit (503s in
    # the warm-up on a busy box); an order costs no more for longer ones.
    os.environ["HOTPATH_REQUEST_TIMEOUT"] = "600"
    os.environ["HOTPATH_DB_ACQUIRE_TIMEOUT"] = "60"
    os.environ["HOTPATH_DB_COMMAND_TIMEOUT"] = "600"
    os.environ["HOTPATH_REDIS_TIMEOUT"] = "30"
    devnull = open(os.devnull, "wb")  # noqa: ASYNC230, SIM115 (open for the whole run)
    logger = configure_logging("info", stream=devnull)
    app = create_app(load_settings(), logger=logger)

    # The edge ceiling's jobs log where hotpath's do.
    def logger_for(level: str = "info", stream: BinaryIO | None = None) -> FilteringBoundLogger:
        return logger

    edge_jobs.logger_for = logger_for
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://hotpath") as http:
            login = await http.post(
                "/v1/auth/login", json={"email": account.email, "password": account.password}
            )
            login.raise_for_status()
            bearer = f"Bearer {login.json()['access_token']}".encode()
        # The ceilings' callables take plain dicts, which ASGIApp's MutableMapping covers.
        async with lifespan(cast(ASGIApp, other)):
            for side in (app, other):
                await _batch(side, bearer, BATCH, lanes)()  # warm: statements, first-call builds
            yield app, bearer


async def _profile(batch: Batch, args: argparse.Namespace) -> None:
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(args.rounds):
        await batch()
    profiler.disable()
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--profile", choices=("hotpath", "ceiling", "edge"))
    parser.add_argument("--sort", default="tottime", help="cProfile's order (tottime, cumtime)")
    parser.add_argument(
        "--lines",
        default=45,
        type=lambda text: int(text) if text.isdigit() else text,
        help="cProfile's rows, or a regex of files",
    )
    parser.add_argument(
        "--against",
        choices=("ceiling", "edge"),
        default="ceiling",
        help="ceiling_order (the transaction alone) or its edge ceiling (hotpath's jobs too)",
    )
    parser.add_argument("--only", choices=("hotpath", "ceiling", "edge"))
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="orders in flight at once (make bench's wrk: 16 connections)",
    )
    args = parser.parse_args()
    lanes = args.concurrency
    against = "edge" if "edge" in (args.only, args.profile) else args.against
    other = order_edge.app if against == "edge" else ceiling.app
    with setup.bench_database() as url, asyncio.Runner() as runner:
        account = setup.prepare_database(url, products=PRODUCTS, accounts=1)[0]
        running = _running(url, account, lanes, other)
        app, bearer = runner.run(running.__aenter__())
        try:
            sides = {"hotpath": app, against: other}
            if args.only:
                only = _batch(sides[args.only], bearer, args.requests, lanes)
                # The one call callgrind collects in (--toggle-collect=functools_reduce): the
                # orders alone, not the set-up, the login or the warm-up.
                functools.reduce(lambda _, __: runner.run(only()), range(1), None)
                return
            batches = {name: _batch(side, bearer, BATCH, lanes) for name, side in sides.items()}
            if args.profile:
                runner.run(_profile(batches[args.profile], args))
                return
            per_round = runner.run(_measure(batches, args.rounds))
        finally:
            runner.run(running.__aexit__(None, None, None))
    ratios = [h / c for h, c in zip(per_round["hotpath"], per_round[against], strict=True)]
    print(
        ", ".join(
            f"{name} median {statistics.median(us):.0f} us best {min(us):.0f} us"
            for name, us in per_round.items()
        )
        + f"; hotpath / {against} per round: median {statistics.median(ratios):.2f}"
        + f" (load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
