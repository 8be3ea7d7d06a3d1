"""The open-model step: the warm read (``product_get``) offered at fixed rates, shares of the
peak wrk just measured for it, with latency counted from each request's due time (no
coordinated omission, bench/suite/openloop.py), and beside it, at the same rates and in
alternation, the box's floors:

- ``ceiling_json``, the bare ASGI callable on the same granian: what the generator, the
  scheduler and the server process cost a request's latency on this box with nothing of
  hotpath in it;
- ``ceiling_get_edge``, the warm read's jobs fused into one callable (token, limiter, product
  cache, access line: bench/ceilings/product_edge.py): the same plus the jobs, without
  hotpath's structure.

Each share is a few rounds of one run per target, in the same order every round, so a box that
gets busier or quieter over the step moves all three alike; each target's rounds are pooled
into one row (bench/suite/report.py splits hotpath's p99 into the floor's and the rest).
All three are sent the same requests (the ceilings read only what they need of them)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from bench.suite.ceilings import CEILINGS
from bench.suite.openloop import OpenLoopResult, pooled, run_open_loop
from bench.suite.servers import HOST, Server, asgi_command, running_all
from bench.suite.state import Run
from bench.suite.wrk import Load, run

HOTPATH = "product_get"
# The floors, from the barest up: hotpath's row is split against them in this order.
FLOORS = ("ceiling_json", "ceiling_get_edge")
TARGETS = (HOTPATH, *reversed(FLOORS))  # the order of each round


def measure_open_model(state: Run, hotpath: Server, url: str, tokens_file: str) -> None:
    """One row per share and target in ``state.results.open_model``; hotpath is already
    warm (wrk's scenarios ran on it), the floors are started here and warmed with wrk."""
    options = state.options
    if not options.openloop_shares:
        return
    peak = next(o.measured.rps for o in state.results.outcomes if o.name == HOTPATH)
    tokens = Path(tokens_file).read_text().split()
    rng = random.Random(7)
    requests = [
        f"GET /v1/products/{rng.randint(1, options.hot_products)} HTTP/1.1\r\n"
        f"Host: {HOST}\r\nAuthorization: Bearer {rng.choice(tokens)}\r\n\r\n".encode()
        for _ in range(5000)
    ]
    starts = {
        name: (
            asgi_command(CEILINGS[name].target),
            CEILINGS[name].env(url, state),
            CEILINGS[name].ready,
        )
        for name in FLOORS
    }
    with running_all(starts, log=state.log) as floors:
        servers = {HOTPATH: hotpath, **floors}
        if options.warmup > 0:  # the edge's product cache filled as hotpath's was, by wrk
            hot = {"BENCH_PRODUCTS": str(options.hot_products), "BENCH_TOKENS": tokens_file}
            for name in FLOORS:
                load = Load(options.warmup, options.connections)
                run(floors[name].base, "product_get.lua", hot, load, floors[name].pid)
        for share in options.openloop_shares:
            found: dict[str, list[OpenLoopResult]] = {name: [] for name in TARGETS}
            for _ in range(options.openloop_rounds):
                for name in TARGETS:
                    port = int(servers[name].base.rsplit(":", 1)[1])
                    found[name].append(
                        run_open_loop(
                            HOST,
                            port,
                            requests,
                            rate=share * peak,
                            seconds=options.openloop_seconds,
                            warmup=options.openloop_warmup,
                        )
                    )
            for name in TARGETS:
                state.results.open_model.append(row(name, share, found[name]))


def row(target: str, share: float, runs: list[OpenLoopResult]) -> dict[str, Any]:
    """One target's rounds at one share, pooled, with each round's p99 beside."""
    whole = pooled(runs)
    return {
        "target": target,
        "share_of_peak": share,
        "rate": round(whole.rate, 1),
        "sent": whole.sent,
        "errors": whole.errors,
        "p50_ms": round(whole.percentile(0.5), 3),
        "p99_ms": round(whole.percentile(0.99), 3),
        "p999_ms": round(whole.percentile(0.999), 3),
        "send_lag_p99_ms": round(whole.send_lag_p99_ms, 3),
        "rounds_p99_ms": [round(r.percentile(0.99), 3) for r in runs],
    }
