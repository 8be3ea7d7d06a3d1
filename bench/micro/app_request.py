"""``python -m bench.micro.app_request``: what hotpath's whole app costs per request in process.

create_app in make bench's production configuration (bench/suite/state.py's hotpath_env: access
log on at info level, the limiter and the metrics on, compression and the in-flight cap at their
defaults), its lifespan running on a fresh bench database, called as an ASGI app directly with
a prebuilt scope: ``GET /livez`` and a warm ``GET /v1/products/{id}`` with a bearer token, as
the served scenarios send them. The log lines go to /dev/null through the same buffered writer.

Rounds interleave the two requests; the minimum of the rounds' per-request times is printed.
``--profile`` prints a cProfile of one kind; ``--only KIND --requests N`` just runs N requests of
one kind, for ``valgrind --tool=callgrind`` (instruction counts, repeatable on a busy box).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from starlette.types import ASGIApp, Message

from bench.suite import setup
from bench.suite.state import Options, Run, hotpath_env
from server.app import create_app
from server.runtime.logs import configure_logging
from server.runtime.settings import load_settings
from tests.fixtures.support import lifespan

BATCH = 200
PRODUCTS = 50


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


class _Check:
    """A send that keeps the status, so a wrong answer stops the measurement."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


Batch = Callable[[], Awaitable[None]]


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


async def _serve(
    url: str, account: setup.Account, args: argparse.Namespace, devnull: BinaryIO
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-app-request-"))
    os.environ.update(hotpath_env(Run(Options(), workdir), url))
    app = create_app(load_settings(), logger=configure_logging("info", stream=devnull))
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://hotpath") as http:
            login = await http.post(
                "/v1/auth/login", json={"email": account.email, "password": account.password}
            )
            login.raise_for_status()
            token = login.json()["access_token"]
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        scopes = {
            "livez": _scope("/livez", [(b"user-agent", b"wrk")]),
            "product_get": _scope("/v1/products/7", [(b"user-agent", b"wrk"), *bearer]),
        }
        if args.only:
            await _batch(app, scopes[args.only], args.requests)()
            return
        batches = {name: _batch(app, scope) for name, scope in scopes.items()}
        for batch in batches.values():
            await batch()  # warm: the product's cache entry, the first-call builds
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
    parser.add_argument("--profile", choices=("livez", "product_get"))
    parser.add_argument("--only", choices=("livez", "product_get"))
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    with setup.bench_database() as url, open(os.devnull, "wb") as devnull:
        account = setup.prepare_database(url, products=PRODUCTS, accounts=1)[0]
        asyncio.run(_serve(url, account, args, devnull))


if __name__ == "__main__":
    main()
