"""``python -m bench.micro.app_request``: what hotpath's whole app costs per request in process.

create_app in make bench's production configuration (bench/suite/state.py's hotpath_env: access
log on at info level, the limiter and the metrics on, compression and the in-flight cap at their
defaults), its lifespan running on a fresh bench database, called as an ASGI app directly with
a prebuilt scope: ``GET /livez`` and a warm ``GET /v1/products/{id}`` with a bearer token, as
the served scenarios send them. The log lines go to /dev/null through the same buffered writer.
``product_get_nocache`` is the same read on an app whose product cache is off
(``HOTPATH_PRODUCT_CACHE_SECONDS=0``, as make bench serves ``hotpath_nocache``): a primary-key
lookup per request. It runs with ``--only`` or ``--profile`` (beside ``livez``), on an app of
its own.

Rounds interleave the two requests; the minimum of the rounds' per-request times is printed.
``--profile`` prints a cProfile of one kind. ``--only KIND --requests N`` runs N requests of one
kind, after the warm-up, in an event loop run inside one ``functools.reduce`` call, so that
callgrind counts those requests' instructions only (repeatable on a busy box)::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \
        .venv/bin/python -m bench.micro.app_request --only livez --requests 2000

"Those requests' instructions" include what runs on the wall clock meanwhile, which under
valgrind is many times longer and, on a busy box, not the same from run to run: the rate
limiter's leases lapse (a Redis call through coredis each), the product cache's heartbeat and
the pool's housekeeping run. Two runs of ``--only product_get_nocache`` started together,
before and after a change that makes the miss 28,600 instructions cheaper (counted alone),
gave 726,000 (before) and 1,061,000 (after) a request: the difference in coredis and the
interpreter, none in asyncpg. Compare such counts with a clock that stands still, or count the
changed path alone.

So ``--only livez`` and ``--only product_get`` count another way. Once the app is warm its
clocks stop: the product cache's (its follower's, its shared store's) and the rate limiter's read
a still time from then on, and one more warm-up batch (which may yield to the event loop) lets
the cache and the leases settle at that time. Then each request's steps run one by one, each in
a ``functools.reduce`` call of its own: callgrind counts the request's own code, from the app's
call to its end, and nothing the event loop runs when a request waits (a lease's refill from
Redis, asked for ahead and landing meanwhile; the housekeeping, the heartbeat), which at 2,000
requests a run swung the warm read's count by a fifth (149k and 182k). Counted so, two runs of
the same tree agree within about 1% (``time.monotonic`` itself, which the deadline reads, runs
on). ``product_get_nocache`` waits on PostgreSQL every request, so it is counted as before, the
event loop and all, in one ``reduce`` call.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import os
import pstats
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from starlette.types import ASGIApp, Message

from bench.suite import setup
from bench.suite.state import Options, Run, hotpath_env
from server.app import create_app
from server.catalog.cache import ProductCache
from server.catalog.cache_follower import InvalidationFollower
from server.catalog.cache_redis import SharedProducts
from server.ratelimit.limiter import RateLimiter
from server.runtime.logs import configure_logging
from server.runtime.settings import load_settings
from tests.fixtures.support import lifespan

BATCH = 200
PRODUCTS = 50
KINDS = ("livez", "product_get", "product_get_nocache")
PRODUCT_KINDS = ("product_get", "product_get_nocache")
STEPPED = ("livez", "product_get")  # counted a step at a time, clocks still (see above)
_ONCE = range(1)


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50123),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _stop_clocks() -> list[object]:
    """Every product cache's and rate limiter's clock (and their parts') reads the time of this
    call from now on; those stopped."""
    still = time.monotonic()
    kinds = (ProductCache, InvalidationFollower, SharedProducts, RateLimiter)
    stopped: list[object] = []
    gc.unfreeze()  # the lifespan froze them: get_objects() lists no frozen object
    for found in gc.get_objects():
        if isinstance(found, kinds):
            found._clock = lambda: still
            stopped.append(found)
    gc.freeze()
    return stopped


def _check_limiters(stopped: list[object]) -> None:
    """A limiter deciding locally (Redis paused or failed) counts another path: refuse."""
    for found in stopped:
        if isinstance(found, RateLimiter) and found.fallback_active:
            raise RuntimeError("the rate limiter fell back to local decisions: count again")


class _Check:
    """A send that keeps the status, so a wrong answer stops the measurement."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


Batch = Callable[[], Coroutine[Any, Any, None]]


def _batch(app: ASGIApp, scope: dict[str, Any], count: int = BATCH) -> Batch:
    check = _Check()

    async def run() -> None:
        check.statuses.clear()
        for _ in range(count):
            await app(dict(scope, headers=list(scope["headers"])), _receive, check)
        if set(check.statuses) != {200}:
            raise RuntimeError(f"{scope['path']} answered {sorted(set(check.statuses))}")

    return run


async def _measure(batches: dict[str, Batch], rounds: int) -> dict[str, float]:
    best = {name: float("inf") for name in batches}
    for _ in range(rounds):
        for name, batch in batches.items():
            start = time.perf_counter()
            await batch()
            best[name] = min(best[name], (time.perf_counter() - start) / BATCH * 1e6)
    return best


async def _log_in(app: ASGIApp, account: setup.Account) -> str:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://hotpath") as http:
        login = await http.post(
            "/v1/auth/login", json={"email": account.email, "password": account.password}
        )
        login.raise_for_status()
        return str(login.json()["access_token"])


@asynccontextmanager
async def _running(
    url: str, account: setup.Account, devnull: BinaryIO, kinds: tuple[str, ...]
) -> AsyncIterator[tuple[ASGIApp, dict[str, dict[str, Any]]]]:
    # The keys and data directory hotpath_env makes go with it.
    with tempfile.TemporaryDirectory(prefix="hotpath-app-request-") as workdir:
        os.environ.update(hotpath_env(Run(Options(), Path(workdir)), url))
        if "product_get_nocache" in kinds:
            os.environ["HOTPATH_PRODUCT_CACHE_SECONDS"] = "0"  # every read a primary-key lookup
        if kinds in (("product_get",), ("product_get_nocache",)):
            # Under valgrind the login's argon2 hash outlasts the default 10 s deadline, and the
            # warm-up the 1 s pool wait; neither costs more per request for being longer.
            os.environ["HOTPATH_REQUEST_TIMEOUT"] = "600"
            os.environ["HOTPATH_DB_ACQUIRE_TIMEOUT"] = "60"
        if len(kinds) == 1 and kinds[0] in STEPPED:
            # A Redis call that outlasts its timeout under valgrind pauses the limiter's use of
            # Redis until a time the still clock never reaches: every request would then be
            # decided locally (30k instructions more a read, in some runs and not others).
            os.environ["HOTPATH_REDIS_TIMEOUT"] = "30"
        app = create_app(load_settings(), logger=configure_logging("info", stream=devnull))
        async with lifespan(app):
            scopes = {"livez": _scope("/livez", [(b"user-agent", b"wrk")])}
            for kind in PRODUCT_KINDS:
                if kind in kinds:
                    token = await _log_in(app, account)
                    bearer = [(b"authorization", f"Bearer {token}".encode())]
                    scopes[kind] = _scope("/v1/products/7", [(b"user-agent", b"wrk"), *bearer])
            for scope in scopes.values():
                await _batch(app, scope)()  # warm: the product's cache entry, the first-call builds
            yield app, scopes


async def _settle(app: ASGIApp, scope: dict[str, Any]) -> None:
    """A warm-up at the still time: a refill or a reload it starts gets to land."""
    for _ in range(3):
        await _batch(app, scope)()
        await asyncio.sleep(0.05)


async def _stepped(app: ASGIApp, scope: dict[str, Any], count: int) -> None:
    """``count`` requests, each step of each in a ``functools.reduce`` call of its own (what
    callgrind collects); what a step waits for is awaited between them, uncounted."""
    check = _Check()
    for _ in range(count):
        request = dict(scope, headers=list(scope["headers"]))
        steps = functools.reduce(lambda _, __: _first_step(app, request, check), _ONCE, None)
        while steps is not None:
            waited_on = steps[1]
            if waited_on is None:
                await asyncio.sleep(0)  # a bare yield: the loop's turn
            else:
                # As a task takes a future its coroutine yields: unblocked, then awaited.
                waited_on._asyncio_future_blocking = False
                await waited_on
            coro = steps[0]
            steps = functools.reduce(lambda _, __: _next_step(coro), _ONCE, None)
    if set(check.statuses) != {200}:
        raise RuntimeError(f"{scope['path']} answered {sorted(set(check.statuses))}")


Steps = tuple[Coroutine[Any, Any, None], Any] | None  # the request and what it waits on


def _first_step(app: ASGIApp, scope: dict[str, Any], check: _Check) -> Steps:
    return _next_step(app(scope, _receive, check))  # type: ignore[arg-type]


def _next_step(coro: Coroutine[Any, Any, None]) -> Steps:
    try:
        return coro, coro.send(None)
    except StopIteration:
        return None


async def _report(
    app: ASGIApp, scopes: dict[str, dict[str, Any]], args: argparse.Namespace
) -> None:
    batches = {name: _batch(app, scope) for name, scope in scopes.items()}
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.rounds):
            await batches[args.profile]()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        return
    best = await _measure(batches, args.rounds)
    print(", ".join(f"{name} {us:.2f} us" for name, us in best.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--profile", choices=KINDS)
    parser.add_argument("--only", choices=KINDS)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    with (
        setup.bench_database() as url,
        open(os.devnull, "wb") as devnull,
        asyncio.Runner() as runner,
    ):
        account = setup.prepare_database(url, products=PRODUCTS, accounts=1)[0]
        if args.only:
            kinds: tuple[str, ...] = (args.only,)
        elif args.profile == "product_get_nocache":
            kinds = ("livez", "product_get_nocache")  # the cache is off for the whole app
        else:
            kinds = ("livez", "product_get")
        running = _running(url, account, devnull, kinds)
        app, scopes = runner.run(running.__aenter__())
        try:
            if args.only:
                if args.only in STEPPED:
                    stopped = _stop_clocks()
                    if len(stopped) < 2:
                        raise RuntimeError("no product cache or rate limiter to stop")
                    runner.run(_settle(app, scopes[args.only]))
                    runner.run(_stepped(app, scopes[args.only], args.requests))
                    _check_limiters(stopped)
                else:
                    # The one call callgrind collects in (--toggle-collect=functools_reduce):
                    # the event loop running these requests, and nothing before or after.
                    batch = _batch(app, scopes[args.only], args.requests)
                    functools.reduce(lambda _, __: runner.run(batch()), range(1), None)
            else:
                runner.run(_report(app, scopes, args))
        finally:
            runner.run(running.__aexit__(None, None, None))


if __name__ == "__main__":
    main()
