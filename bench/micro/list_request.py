"""``python -m bench.micro.list_request``: what hotpath's whole app costs per product list
request in process (issue 19's ``product_list_first`` and ``product_list_deep``).

As bench/micro/app_request.py builds it (make bench's production configuration, a fresh bench
database, the app called as ASGI with a prebuilt scope), the anonymous
``GET /v1/products?limit=50`` make bench sends, its first page and a page ``DEEP`` cursors in.
Rounds interleave the two; the minimum of the rounds' per-request CPU times of this process
(not PostgreSQL's, whose round trips are most of the wall time) is printed.
``--profile KIND`` prints a cProfile; ``--only KIND --requests N`` runs N requests of one kind in
one ``functools.reduce`` call, for callgrind::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \
        .venv/bin/python -m bench.micro.list_request --only list_first --requests 500
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import pstats
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from starlette.types import ASGIApp

from bench.micro.app_request import _batch, _scope
from bench.suite import setup
from bench.suite.state import Options, Run, hotpath_env
from server.app import create_app
from server.runtime.logs import configure_logging
from server.runtime.settings import load_settings
from tests.fixtures.support import lifespan

PRODUCTS = 300
DEEP = 3
PATH = "/v1/products"
QUERY = "limit=50"
KINDS = ("list_first", "list_deep")


def _list_scope(query: str) -> dict[str, Any]:
    scope = _scope(PATH, [(b"user-agent", b"wrk")])
    scope["query_string"] = query.encode()
    return scope


async def _deep_query(app: ASGIApp) -> str:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
    query = QUERY
    async with httpx.AsyncClient(transport=transport, base_url="http://hotpath") as http:
        for _ in range(DEEP):
            answer = await http.get(f"{PATH}?{query}")
            cursor = answer.raise_for_status().json()["next_cursor"]
            query = f"{QUERY}&cursor={cursor}"
    return query


@asynccontextmanager
async def _running(
    url: str, devnull: BinaryIO
) -> AsyncIterator[tuple[ASGIApp, dict[str, dict[str, Any]]]]:
    with tempfile.TemporaryDirectory(prefix="hotpath-list-request-") as workdir:
        os.environ.update(hotpath_env(Run(Options(), Path(workdir)), url))
        # Under valgrind the warm-up outlasts the default deadline and pool wait.
        os.environ["HOTPATH_REQUEST_TIMEOUT"] = "600"
        os.environ["HOTPATH_DB_ACQUIRE_TIMEOUT"] = "60"
        os.environ["HOTPATH_DB_CONNECT_TIMEOUT"] = "60"
        app = create_app(load_settings(), logger=configure_logging("info", stream=devnull))
        async with lifespan(app, timeout=600):  # valgrind starts it slowly
            scopes = {
                "list_first": _list_scope(QUERY),
                "list_deep": _list_scope(await _deep_query(app)),
            }
            for scope in scopes.values():
                await _batch(app, scope, 20)()
            yield app, scopes


async def _report(
    app: ASGIApp, scopes: dict[str, dict[str, Any]], args: argparse.Namespace
) -> None:
    batches = {name: _batch(app, scope, args.batch) for name, scope in scopes.items()}
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.rounds):
            await batches[args.profile]()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(45)
        return
    best = {name: float("inf") for name in batches}
    for _ in range(args.rounds):
        for name, batch in batches.items():
            start = time.process_time()
            await batch()
            best[name] = min(best[name], (time.process_time() - start) / args.batch * 1e6)
    print(", ".join(f"{name} {us:.1f} us CPU" for name, us in best.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--profile", choices=KINDS)
    parser.add_argument("--only", choices=KINDS)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with (
        setup.bench_database() as url,
        open(os.devnull, "wb") as devnull,
        asyncio.Runner() as runner,
    ):
        setup.prepare_database(url, products=PRODUCTS, accounts=0)
        running = _running(url, devnull)
        app, scopes = runner.run(running.__aenter__())
        try:
            if args.only:
                batch = _batch(app, scopes[args.only], args.requests)
                functools.reduce(lambda _, __: runner.run(batch()), range(1), None)
            else:
                runner.run(_report(app, scopes, args))
        finally:
            runner.run(running.__aexit__(None, None, None))


if __name__ == "__main__":
    main()
