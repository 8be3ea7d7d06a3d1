"""``python -m bench.suite.attribution`` (``make bench-attribution``): what each part of the
served stack costs, in server CPU microseconds per request, measured in alternation.

Every server runs at once (an idle one costs nothing): the bare ASGI ceiling (``ceiling_json``;
``ceiling_list_first`` for the lists, the first and the deep page on one server), for ping and the
lists also the edge ceiling (``ceiling_json_edge``, ``ceiling_list_edge``: the scenario's jobs
fused into it), and
hotpath in make bench's production configuration (bench/suite/state.py's hotpath_env), each
variant with one setting changed (``VARIANTS``). A round runs the scenario once on each, for
``--seconds``; the order rotates from round to round, and a box that gets busier or quieter
moves every side of a ratio alike. Only the ratios (to the ceiling measured in the same round,
and to ``prod``) count on a shared box; the table gives their medians, the paired differences
and the load average around the run.

``--baseline DIR`` also serves each hotpath variant from another source tree (a ``git archive``
of an earlier commit, say), as ``<variant>@base``: before and after, interleaved.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.suite import setup
from bench.suite.ceilings import CEILINGS
from bench.suite.rounds_cli import give_back, rounds_parser
from bench.suite.servers import ROOT, Server, asgi_command, hotpath_command, running
from bench.suite.state import Options, Run, hotpath_env
from bench.suite.wrk import Load, run

# One setting changed from the production configuration each (``bare``: all of them).
_OFF = {
    "noaccess": {"HOTPATH_ACCESS_LOG": "false"},
    "quietlog": {"HOTPATH_LOG_LEVEL": "warning"},  # the layer runs; the line is filtered
    "nolimit": {"HOTPATH_RATE_LIMITS": "false"},
    "nocompress": {"HOTPATH_COMPRESS_FROM_BYTES": "0"},
    "noinflight": {"HOTPATH_MAX_IN_FLIGHT": "0"},
}
VARIANTS: dict[str, dict[str, str]] = {
    "prod": {},
    **_OFF,
    "bare": {k: v for name, env in _OFF.items() if name != "quietlog" for k, v in env.items()},
}
SCRIPTS = {
    "ping": "ping.lua",
    "product_get": "product_get.lua",
    "product_list_first": "paths.lua",
    "product_list_deep": "paths.lua",
}
# Each scenario's bare ceiling (the ratios' denominator) and its edge ceiling, if it has one.
CEILING_OF = {
    "ping": ("ceiling_json", "ceiling_json_edge"),
    "product_get": ("ceiling_json", None),
    "product_list_first": ("ceiling_list_first", "ceiling_list_edge"),
    "product_list_deep": ("ceiling_list_first", "ceiling_list_edge"),  # one server for both
}
# The deep list page: this many cursors in (the bench's 100 pages need its 10,000 products).
_DEEP_PAGES = 10


@dataclasses.dataclass(frozen=True)
class Plan:
    scenario: str = "ping"
    variants: tuple[str, ...] = ("prod", "noaccess", "nolimit", "bare")
    rounds: int = 3
    seconds: float = 4.0
    warmup: float = 1.0
    connections: int = 16
    hot_products: int = 2_000
    accounts: int = 4
    baseline: Path | None = None


def measure(plan: Plan) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-bench-attribution-"))
    load_before = os.getloadavg()
    with setup.bench_database() as url, ExitStack() as stack:
        accounts = setup.prepare_database(url, products=plan.hot_products, accounts=plan.accounts)
        state = Run(Options(), workdir)
        env = hotpath_env(state, url)
        # An edge ceiling: the scenario's jobs without hotpath's structure (ping and the lists).
        ceilings = [name for name in CEILING_OF[plan.scenario] if name is not None]
        servers = {
            name: stack.enter_context(
                running(name, asgi_command(CEILINGS[name].target), CEILINGS[name].env(url, state),
                        ready_path=CEILINGS[name].ready, log=state.log)
            )
            for name in ceilings
        }  # fmt: skip
        trees = [("", ROOT)] + ([("@base", plan.baseline)] if plan.baseline else [])
        for suffix, tree in trees:
            for variant in plan.variants:
                name = variant + suffix
                servers[name] = stack.enter_context(
                    running(name, hotpath_command(), {**env, **VARIANTS[variant]},
                            ready_path="/readyz", log=state.log, cwd=tree)
                )  # fmt: skip
        paths = _list_paths(plan, state, servers[plan.variants[0]])
        loads = {name: (server, {**paths, **_load_env(plan, state, name, server, accounts)})
                 for name, server in servers.items()}  # fmt: skip
        script = SCRIPTS[plan.scenario]
        for server, environment in loads.values():
            run(server.base, script, environment, Load(plan.warmup, plan.connections), server.pid)
        rounds: list[dict[str, float]] = []
        throughput: list[dict[str, float]] = []
        order = list(loads)
        for index in range(plan.rounds):
            round_: dict[str, float] = {}
            rps: dict[str, float] = {}
            shift = index % len(order)
            for name in order[shift:] + order[:shift]:
                server, environment = loads[name]
                load = Load(plan.seconds, plan.connections)
                measured = run(server.base, script, environment, load, server.pid)
                if measured.http_errors or measured.socket_errors:
                    raise RuntimeError(f"{name} had errors: {measured}")
                round_[name] = measured.cpu_us_per_request
                rps[name] = measured.rps
            rounds.append(round_)
            throughput.append(rps)
    return {
        "plan": {**dataclasses.asdict(plan), "baseline": str(plan.baseline or "")},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rounds": rounds,
        "rps": throughput,
    }


def _list_paths(plan: Plan, state: Run, server: Server) -> dict[str, str]:
    """A list scenario's one path (the first page, or the page _DEEP_PAGES cursors in), for
    every server: the cursors are signed with the run's one key."""
    if not plan.scenario.startswith("product_list_"):
        return {}
    first, deep = setup.list_paths(server.base, deep_pages=_DEEP_PAGES)
    path = deep if plan.scenario == "product_list_deep" else first
    return {"BENCH_PATHS": state.file("attribution-paths.txt", [path])}


def _load_env(
    plan: Plan, state: Run, name: str, server: Server, accounts: list[setup.Account]
) -> dict[str, str]:
    if plan.scenario != "product_get":
        return {}
    tokens = ["none"] if name.startswith("ceiling_") else setup.log_in(server.base, accounts)
    safe = name.replace("@", "-")
    return {
        "BENCH_PRODUCTS": str(plan.hot_products),
        "BENCH_TOKENS": state.file(f"tokens-{safe}.txt", tokens),
    }


def table(result: dict[str, object]) -> str:
    rounds: list[dict[str, float]] = result["rounds"]  # type: ignore[assignment]
    plan: dict[str, object] = result["plan"]  # type: ignore[assignment]
    load: dict[str, list[float]] = result["load_average"]  # type: ignore[assignment]
    ceiling = CEILING_OF[str(plan["scenario"])][0]
    lines = [
        f"{plan['scenario']}: {len(rounds)} rounds of {plan['seconds']:g} s, "
        f"{plan['connections']} connections; load average before "
        f"{_avg(load['before'])}, after {_avg(load['after'])}",
        "",
        f"| server | µs/req (median; min-max) | x {ceiling} (median; per round) "
        "| minus prod, µs (median) | req/s (median) |",
        "|---|---|---|---|---:|",
    ]
    throughput: list[dict[str, float]] = result.get("rps") or [{} for _ in rounds]  # type: ignore[assignment]
    for name in rounds[0]:
        cpu = [r[name] for r in rounds]
        rps = [r.get(name, 0.0) for r in throughput]
        ratios = [r[name] / r[ceiling] for r in rounds]
        # Paired: each round's difference from this tree's prod, then their median.
        delta = (
            f"{statistics.median(r[name] - r['prod'] for r in rounds):+.1f}"
            if "prod" in rounds[0]
            else ""
        )
        lines.append(
            f"| {name} | {statistics.median(cpu):.1f}; {min(cpu):.0f}-{max(cpu):.0f} "
            f"| {statistics.median(ratios):.2f}; {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {delta} | {statistics.median(rps):,.0f} |"
        )
    return "\n".join(lines)


def _avg(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def main(argv: list[str]) -> int:
    parser = rounds_parser(
        "bench.suite.attribution", __doc__, rounds=Plan.rounds, seconds=Plan.seconds
    )
    parser.add_argument("--scenario", choices=sorted(SCRIPTS), default=Plan.scenario)
    parser.add_argument("--variants", default=",".join(Plan.variants),
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")  # fmt: skip
    parser.add_argument("--baseline", type=Path, help="a source tree to serve as <variant>@base")
    args = parser.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    plan = Plan(
        scenario=args.scenario,
        variants=variants,
        rounds=args.rounds,
        seconds=args.seconds,
        baseline=args.baseline.resolve() if args.baseline else None,
    )
    return give_back(measure(plan), table, args.out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
