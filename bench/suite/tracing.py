"""``python -m bench.suite.tracing`` (``make bench-tracing``): what tracing costs a served
request, in server CPU microseconds.

Servers in make bench's production configuration (bench/suite/state.py's hotpath_env: granian,
one worker, access log on, rate limiter on), in pairs: one with tracing off, one exporting every
span (``HOTPATH_OTEL_ENDPOINT``) to an OTLP/HTTP sink on loopback that decodes and counts
what it gets, as a collector would take it. Each scenario runs on its pair in alternation,
round after round, so a box that gets busier or quieter moves both sides of a ratio alike:

- ``product_get``: the warm read (local cache hit): the server span alone;
- ``product_get_nocache``: the product cache off, a PostgreSQL read each time: the server
  span, the SQL statements' spans and the Redis calls' spans.

A server's CPU per request is its process's CPU time (the exporter's thread included) over
the requests wrk completed. Spans per request: each traced server exports to a sink of its own,
counted from when the sink has gone quiet after the warm-up (the batch processor sends every
5 s) to after the servers have stopped (their shutdown sends what is still queued), over the
requests of every round. Printed as a Markdown table; ``--out`` also writes it as JSON.
"""

from __future__ import annotations

import dataclasses
import gzip
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.suite import setup
from bench.suite.rounds_cli import give_back, rounds_parser
from bench.suite.servers import Server, hotpath_command, running_all
from bench.suite.state import Options, Run, hotpath_env
from bench.suite.wrk import Load, run


class SpanSink:
    """POST /v1/traces on loopback: every request decoded, its spans counted, 200 answered."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                count = sum(
                    len(scope.spans)
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                )
                with sink._lock:
                    sink.spans += count
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self) -> int:
        with self._lock:
            return self.spans


def settled(
    sinks: Mapping[str, SpanSink], quiet: float = 6.0, limit: float = 30.0
) -> dict[str, int]:
    """Each sink's count once none of them has had a span for ``quiet`` seconds (longer than
    the batch processor's 5 s schedule), at most ``limit`` seconds from now. The sinks wait
    together: one after the other, each waited its own ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last, since = {name: sink.count() for name, sink in sinks.items()}, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.2)
        if (now := {name: sink.count() for name, sink in sinks.items()}) != last:
            last, since = now, time.monotonic()
    return last


@contextmanager
def span_sink() -> Iterator[SpanSink]:
    sink = SpanSink()
    thread = threading.Thread(target=sink.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.server.shutdown()
        sink.server.server_close()
        thread.join(timeout=5)


@dataclasses.dataclass(frozen=True)
class TracingOptions:
    rounds: int = 5
    seconds: float = 5.0
    warmup: float = 3.0
    connections: int = 16
    products: int = 10_000
    hot_products: int = 2_000
    accounts: int = 20


def measure(options: TracingOptions) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-bench-tracing-"))
    requests = {"on": 0, "on_nocache": 0}
    with (
        setup.bench_database() as url,
        span_sink() as warm_sink,
        span_sink() as cold_sink,
        ExitStack() as stack,
    ):
        sinks = {"on": warm_sink, "on_nocache": cold_sink}
        accounts = setup.prepare_database(url, products=options.products, accounts=options.accounts)
        state = Run(Options(), workdir)
        env = hotpath_env(state, url)
        nocache = {"HOTPATH_PRODUCT_CACHE_SECONDS": "0"}
        starts = {
            "off": env,
            "on": {**env, "HOTPATH_OTEL_ENDPOINT": warm_sink.endpoint},
            "off_nocache": {**env, **nocache},
            "on_nocache": {**env, **nocache, "HOTPATH_OTEL_ENDPOINT": cold_sink.endpoint},
        }
        servers: dict[str, Server] = stack.enter_context(
            running_all(
                {
                    name: (hotpath_command(), environment, "/readyz")
                    for name, environment in starts.items()
                },
                log=state.log,
            )
        )
        loads: dict[str, tuple[Server, dict[str, str]]] = {}
        for name, server in servers.items():
            tokens = state.file(f"tokens-{name}.txt", setup.log_in(server.base, accounts))
            products = options.products if "nocache" in name else options.hot_products
            loads[name] = (server, {"BENCH_PRODUCTS": str(products), "BENCH_TOKENS": tokens})
        load = Load(options.seconds, options.connections)
        if options.warmup > 0:
            for server, environment in loads.values():
                run(
                    server.base,
                    "product_get.lua",
                    environment,
                    Load(options.warmup, 16),
                    server.pid,
                )
        # The log-ins' and warm-up's spans are out of the count: the sinks have gone quiet.
        before = settled(sinks)
        rounds: list[dict[str, float]] = []
        for _ in range(options.rounds):
            round_: dict[str, float] = {}
            for name, (server, environment) in loads.items():
                measured = run(server.base, "product_get.lua", environment, load, server.pid)
                if measured.http_errors or measured.socket_errors:
                    raise RuntimeError(f"{name} had errors: {measured}")
                round_[name] = measured.cpu_us_per_request
                if name in requests:
                    requests[name] += measured.requests
            rounds.append(round_)
        stack.close()  # the servers stop, and their batch processors send what is queued
        spans_per_request = {
            name: (sink.count() - before[name]) / max(1, requests[name])
            for name, sink in sinks.items()
        }
    return {
        "options": dataclasses.asdict(options),
        "rounds": rounds,
        "spans_per_request": spans_per_request,
    }


def table(result: dict[str, object]) -> str:
    rounds: list[dict[str, float]] = result["rounds"]  # type: ignore[assignment]
    spans: dict[str, float] = result["spans_per_request"]  # type: ignore[assignment]
    lines = [
        "| scenario | off µs/req (best, median) | on µs/req (best, median) | on - off | on / off "
        "(per round) | spans/request |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, off, on in (
        ("product_get (warm read)", "off", "on"),
        ("product_get_nocache (PostgreSQL)", "off_nocache", "on_nocache"),
    ):
        offs = sorted(r[off] for r in rounds)
        ons = sorted(r[on] for r in rounds)
        ratios = ", ".join(f"{r[on] / r[off]:.2f}" for r in rounds)
        median = len(offs) // 2
        lines.append(
            f"| {scenario} | {offs[0]:.0f}, {offs[median]:.0f} | {ons[0]:.0f}, {ons[median]:.0f}"
            f" | {ons[median] - offs[median]:+.0f} | {ratios} | {spans.get(on, 0):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    defaults = TracingOptions()
    parser = rounds_parser(
        "bench.suite.tracing", __doc__, rounds=defaults.rounds, seconds=defaults.seconds
    )
    parser.add_argument("--smoke", action="store_true", help="a small catalog, no warm-up")
    args = parser.parse_args(argv)
    options = TracingOptions(rounds=args.rounds, seconds=args.seconds)
    if args.smoke:
        options = dataclasses.replace(
            options, warmup=0, products=500, hot_products=200, accounts=2, connections=4
        )
    return give_back(measure(options), table, args.out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
