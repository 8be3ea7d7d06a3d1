"""What a run writes: ``<date>.json`` (everything), ``<date>.md`` (the table and the budget)
and ``<date>.png`` (throughput and p50/p99 per scenario), and the same as ``latest.*`` for the
README."""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from bench.suite.budget import BUDGETS, EDGE
from bench.suite.open_model import HOTPATH
from bench.suite.open_model_report import floor_splits, open_model_lines
from bench.suite.peers import PEERS
from bench.suite.rss import rss_lines, rss_split
from bench.suite.shares import edge_splits, jobs_verdict, limiter_us, ping_split, split_lines
from bench.suite.state import Outcome, Results

MB = 1024 * 1024
RSS_LIMIT_MB = 120
HOTPATH_SERVERS = ("hotpath", "hotpath_nocache", "hotpath_nolimit")
OPEN_MODEL_SHARE = 0.5  # the goal: the warm read's p99 at half its peak, without omission
OPEN_MODEL_P99_MS = 10.0


def _machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).split("\n")[0].strip(),
        **{name: version(name) for name in ("granian", "starlette", "asyncpg", "fastapi")},
    }


def _ratio(outcome: Outcome, by_name: dict[str, Outcome]) -> float | None:
    ceiling = by_name.get(outcome.ceiling or "")
    if ceiling is None:
        return None
    return outcome.measured.cpu_us_per_request / ceiling.measured.cpu_us_per_request


def summarize(results: Results) -> dict[str, Any]:
    by_name = {outcome.name: outcome for outcome in results.outcomes}
    scenarios = []
    for outcome in results.outcomes:
        m = outcome.measured
        ratio = _ratio(outcome, by_name)
        scenarios.append(
            {
                "name": outcome.name,
                "server": outcome.server,
                "description": outcome.description,
                "requests": m.requests,
                "rps": round(m.rps, 1),
                "p50_ms": m.p50_ms,
                "p90_ms": m.p90_ms,
                "p99_ms": m.p99_ms,
                "max_ms": m.max_ms,
                "http_errors": m.http_errors,
                "socket_errors": m.socket_errors,
                "cpu_us_per_request": round(m.cpu_us_per_request, 1),
                "ceiling": outcome.ceiling,
                "cpu_ratio_to_ceiling": None if ratio is None else round(ratio, 3),
            }
        )
    budget = []
    for goal in BUDGETS:
        rounds = [r[goal.scenario] / r[goal.ceiling] for r in results.budget_rounds]
        if rounds:
            ratio = statistics.median(rounds)
            budget.append(
                {
                    "goal": f"{goal.scenario} CPU/request <= {goal.limit:g}x {goal.ceiling}"
                    + ("" if goal.set_by == "issue 19" else f" (set {goal.set_by})"),
                    "value": round(ratio, 3),
                    "met": ratio <= goal.limit,
                    "rounds": [round(r, 3) for r in rounds],
                }
            )
    for point in results.open_model:
        if point["share_of_peak"] == OPEN_MODEL_SHARE and point["target"] == HOTPATH:
            budget.append(
                {
                    "goal": f"product_get p99 < {OPEN_MODEL_P99_MS:g} ms at "
                    f"{OPEN_MODEL_SHARE:.0%} of its peak, open model",
                    "value": point["p99_ms"],
                    "met": point["p99_ms"] < OPEN_MODEL_P99_MS and not point["errors"],
                }
            )
    errors = sum(o.measured.http_errors + o.measured.socket_errors for o in results.outcomes)
    budget.append({"goal": "0 errors in every scenario", "value": errors, "met": errors == 0})
    peak = max((results.peak_rss.get(name, 0) for name in HOTPATH_SERVERS), default=0) / MB
    budget.append(
        {
            "goal": f"hotpath RSS < {RSS_LIMIT_MB} MB per worker",
            "value": round(peak, 1),
            "met": peak < RSS_LIMIT_MB,
        }
    )
    limiter_cost, limiter_paired = limiter_us(results, by_name)
    comparison = []
    for name, *_, against in PEERS:
        peer, mine = by_name.get(name), by_name.get(against)
        if peer and mine:
            comparison.append(
                {
                    "peer": name,
                    "hotpath": against,
                    "cpu_per_request_peer_over_hotpath": round(
                        peer.measured.cpu_us_per_request / mine.measured.cpu_us_per_request, 2
                    ),
                    "rps_hotpath_over_peer": round(mine.measured.rps / peer.measured.rps, 2),
                }
            )
    pools = None
    hotpath_pool, asyncpg_pool = by_name.get("ceiling_pk"), by_name.get("ceiling_pk_asyncpg")
    if hotpath_pool and asyncpg_pool:
        pools = {
            "hotpath_pool_cpu_us": round(hotpath_pool.measured.cpu_us_per_request, 1),
            "asyncpg_noreset_cpu_us": round(asyncpg_pool.measured.cpu_us_per_request, 1),
        }
    return {
        "started": results.started,
        "ceiling_pools": pools,
        "machine": _machine(),
        "options": dataclasses.asdict(results.options),
        "load_generator": "wrk, closed-loop: each connection waits for its answer before the "
        "next request, so latency under overload is understated (coordinated omission)",
        "scenarios": scenarios,
        "peak_rss_mb": {k: round(v / MB, 1) for k, v in results.peak_rss.items()},
        "end_rss_mb": {k: round(v / MB, 1) for k, v in results.end_rss.items()},
        "rss_split": rss_split(results, HOTPATH_SERVERS, RSS_LIMIT_MB),
        "budget": budget,
        "budget_rounds": results.budget_rounds,
        "ping_split": ping_split(results.budget_rounds),
        "edge_splits": edge_splits(results.budget_rounds),
        "peer_comparison": comparison,
        "rate_limiter_cpu_us_per_request": limiter_cost,
        "rate_limiter_paired": limiter_paired,
        "open_model": results.open_model,
        "open_model_floor": floor_splits(results.open_model),
        "artillery": results.artillery,
        "artillery_skipped": results.artillery_skipped,
        "webhooks": results.webhooks,
        "profiles": {
            name: {
                "svg": f"profiles/{name}.svg",
                "samples": found.samples,
                "top": [{"function": f, "share": round(share, 3)} for f, share in found.top],
            }
            for name, found in results.profiles.items()
        },
        "profiles_skipped": results.profiles_skipped,
    }


def markdown(summary: dict[str, Any]) -> str:
    machine = summary["machine"]
    options = summary["options"]
    lines = [
        f"Run {summary['started']} on {machine['cpu']} ({machine['cores']} cores, shared with "
        f"the load generator), Python {machine['python']}, granian {machine['granian']}. "
        f"{machine['wrk']}, 1 thread, {options['connections']} connections, "
        f"{options['seconds']:g} s per scenario after {options['warmup']:g} s of warm-up. "
        "wrk is closed-loop. CPU is the server's process tree, user + system, per request.",
        "",
        "| scenario | req/s | p50 ms | p90 ms | p99 ms | errors | CPU µs/req | x ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary["scenarios"]:
        ratio = s["cpu_ratio_to_ceiling"]
        ceiling = "" if ratio is None else f"{ratio:.2f} x {s['ceiling']}"
        lines.append(
            f"| {s['name']} | {s['rps']:,.0f} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | "
            f"{s['p99_ms']:.2f} | {s['http_errors'] + s['socket_errors']} | "
            f"{s['cpu_us_per_request']:,.0f} | {ceiling} |"
        )
    pools = summary.get("ceiling_pools")
    if pools:
        cheaper = (
            "hotpath's pool"
            if pools["hotpath_pool_cpu_us"] <= pools["asyncpg_noreset_cpu_us"]
            else "asyncpg's pool with a no-op reset"
        )
        lines += [
            "",
            "The database ceilings run on hotpath's own pool: the primary-key ceiling costs "
            f"{pools['hotpath_pool_cpu_us']} µs on it and {pools['asyncpg_noreset_cpu_us']} µs "
            f"on asyncpg's pool with a no-op reset; in this run {cheaper} was the cheaper.",
        ]
    rounds = len(summary["budget_rounds"])
    lines += [
        "",
        f"The CPU budgets are medians of {rounds} rounds in which every budgeted scenario and "
        "its ceiling are measured in alternation, all their servers running, so drift on the "
        "shared box moves both sides of each ratio alike (the table above measures each "
        "scenario once, minutes apart).",
        "",
        "| budget | measured | met |",
        "|---|---:|:---:|",
    ]
    for goal in summary["budget"]:
        lines.append(f"| {goal['goal']} | {goal['value']} | {'yes' if goal['met'] else 'NO'} |")
    split = summary.get("ping_split")
    if split:
        lines += [
            "",
            f"Where ping's {split['ping_over_ceiling_json']}x goes, in the same rounds: the "
            "stack's jobs for `/livez` in their cheapest form, fused into the bare callable "
            f"(`{EDGE}`: request id, access-log line, metrics, deadline, security headers), "
            f"cost {split['jobs']}x ceiling_json ({split['jobs_us']:+} µs); hotpath's "
            f"structure around the same jobs (layers, router, Starlette's request and "
            f"response) {split['structure']}x more ({split['structure_us']:+} µs)."
            + jobs_verdict("ping", split["jobs"]),
        ]
    lines += split_lines(summary.get("edge_splits") or {})
    if summary["peer_comparison"]:
        lines += [
            "",
            "The same authenticated read on the peers (each scenario above says how it is "
            "built), against hotpath's read of the same kind (warm against warm, uncached "
            "against uncached):",
            "",
            "| peer | against | peer CPU / hotpath CPU | hotpath req/s / peer req/s |",
            "|---|---|---:|---:|",
        ]
        for row in summary["peer_comparison"]:
            lines.append(
                f"| {row['peer']} | {row['hotpath']} | "
                f"{row['cpu_per_request_peer_over_hotpath']} | {row['rps_hotpath_over_peer']} |"
            )
    steady = max(
        (v for k, v in summary.get("end_rss_mb", {}).items() if k in HOTPATH_SERVERS), default=0
    )
    if steady:
        lines += [
            "",
            f"hotpath's largest process held {steady} MB once its scenarios were over; its peak "
            "includes argon2id's working memory, 64 MiB for every password hash in flight "
            "(logins, at most `HOTPATH_PASSWORD_HASH_CONCURRENCY` at once), given back when "
            "the hash ends.",
        ]
    lines += rss_lines(summary.get("rss_split"), RSS_LIMIT_MB)
    if summary["rate_limiter_cpu_us_per_request"] is not None:
        lines += [
            "",
            "The global rate limiter (on in every hotpath scenario, with limits the load never "
            "reaches) costs "
            f"{summary['rate_limiter_cpu_us_per_request']} µs of server CPU per request: "
            + (
                "the median of the budget rounds' differences between product_get and "
                "product_get_nolimit, measured in alternation."
                if summary.get("rate_limiter_paired")
                else "product_get against product_get_nolimit, each measured once."
            ),
        ]
    lines += open_model_lines(
        summary.get("open_model") or [],
        summary.get("open_model_floor") or [],
        (OPEN_MODEL_SHARE, OPEN_MODEL_P99_MS),
    )
    art = summary["artillery"]
    if art:
        lines += [
            "",
            f"Artillery, open model: {art['arrival_rate']} new users a second for "
            f"{art['duration_s']} s, each logging in and then making 19 requests (90% reads, "
            f"10% orders): {art['requests']} requests, {art['non_2xx']} non-2xx, "
            f"errors {art['errors'] or 'none'}.",
            "",
            "| request | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        by_request = {"all": art["latency_ms"], **art.get("latency_ms_by_request", {})}
        for name, latency in by_request.items():
            lines.append(
                f"| {name} | {latency['p50']} | {latency['p90']} | {latency['p99']} | "
                f"{latency['max']} |"
            )
    elif summary["artillery_skipped"]:
        lines += ["", f"Artillery skipped: {summary['artillery_skipped']}"]
    hooks = summary.get("webhooks")
    if hooks:
        lines += [
            "",
            f"Webhook delivery: one `python -m server worker` delivered {hooks['delivered']} of "
            f"{hooks['events']} outbox events to one loopback endpoint ({hooks['concurrency']} "
            f"at once) in {hooks['seconds']} s: **{hooks['deliveries_per_second']:,} "
            "deliveries/s**, fan-out, signing and recording each attempt included.",
        ]
    lines += _profile_lines(summary)
    return "\n".join(lines) + "\n"


def _profile_lines(summary: dict[str, Any]) -> list[str]:
    profiles = summary.get("profiles") or {}
    if not profiles:
        skipped = summary.get("profiles_skipped")
        return ["", f"Profiles skipped: {skipped}"] if skipped else []
    lines = [
        "",
        "Where the time goes: py-spy sampled each scenario's server under the same load after "
        "its measurement (flame graphs: "
        + ", ".join(f"[{name}]({p['svg']})" for name, p in profiles.items())
        + "). The functions with the most samples of their own, as shares of the samples "
        "with a working Python frame on top. A frame's own samples include the native code it "
        "calls: the outermost send wrapper's (`send_edge`, the edge layer's) include granian "
        "writing the answer, the worker's entry frame (`_spawn_asgi_lifespan_worker`) the event "
        "loop's native polling; samples with no Python frame at all (granian's Rust threads) "
        "and idle thread-pool threads are counted in the total only.",
        "",
        "| scenario | samples | top functions (share of samples) |",
        "|---|---:|---|",
    ]
    for name, found in profiles.items():
        top = "; ".join(f"`{t['function']}` {t['share']:.0%}" for t in found["top"][:3])
        lines.append(f"| {name} | {found['samples']} | {top} |")
    return lines


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = summary["scenarios"]
    names = [s["name"] for s in scenarios]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 1.5))
    positions = range(len(names))
    left.barh(positions, [s["rps"] for s in scenarios], color="#3572a5")
    left.set_yticks(positions, names)
    left.invert_yaxis()
    left.set_xlabel("requests/s (wrk, closed-loop)")
    height = 0.4
    right.barh(
        [p - height / 2 for p in positions],
        [s["p50_ms"] for s in scenarios],
        height,
        label="p50",
        color="#6aa84f",
    )
    right.barh(
        [p + height / 2 for p in positions],
        [s["p99_ms"] for s in scenarios],
        height,
        label="p99",
        color="#cc4125",
    )
    right.set_yticks(positions, [""] * len(names))
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("latency, ms (log scale)")
    right.legend(loc="lower right")
    figure.suptitle(f"hotpath bench, {summary['started']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(results: Results, directory: Path) -> dict[str, Path]:
    summary = summarize(results)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = summary["started"][:19].replace(":", "-")
    paths = {
        "json": directory / f"{stamp}.json",
        "md": directory / f"{stamp}.md",
        "png": directory / f"{stamp}.png",
    }
    paths["json"].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    paths["md"].write_text(markdown(summary))
    chart(summary, paths["png"])
    for kind, path in paths.items():
        shutil.copyfile(path, directory / f"latest.{kind}")
    if results.profiles:
        # The latest run's flame graphs only: one SVG per profiled scenario, replaced each run.
        shutil.rmtree(directory / "profiles", ignore_errors=True)
        (directory / "profiles").mkdir()
        for name, found in results.profiles.items():
            shutil.copyfile(found.svg, directory / "profiles" / f"{name}.svg")
    return paths
