"""What ``python -m bench.suite.scaling`` writes: ``scaling-<date>.json`` (every figure) and
``scaling-<date>.md`` (the per-request table and the worked example), in bench/results/.

Every per-request figure is net of the idle window's rate (what the server costs with no
request: the revocation poll, the cache's heartbeat), and the worked example is computed from
them, so re-running the module re-derives docs/scaling.md's scaling model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import orjson

from bench.suite.resources import Window
from bench.suite.scaling import ScalingResults, Scenario

# The worked example of issue 20: reads/s and orders/s to serve. Reads split as the bench's
# mixed scenario splits them (80 % by id to 10 % list pages); MISS_SHARE of the reads by id
# find the product cache cold (an assumption: the cache keeps a product 30 s locally and
# until its next write in Redis). Cores are planned at HEADROOM busy.
READS, ORDERS = 100_000, 2_000
LIST_SHARE = 0.10 / 0.90
MISS_SHARE = 0.05
HEADROOM = 0.7
REPLICA_CHECKS_PER_S = 4  # per worker, on the primary and on each standby (server/db/replicas.py)


def _rate(idle: Window | None, value: float) -> float:
    return value / idle.seconds if idle is not None and idle.seconds > 0 else 0.0


def _scenario(item: Scenario, idle: Window | None) -> dict[str, Any]:
    m, w = item.measured, item.window
    n = m.requests or 1

    def net(value: float, idle_value: float) -> float:
        return (value - _rate(idle, idle_value) * w.seconds) / n

    idle_calls = idle.redis_calls if idle is not None else {}
    by_command = {
        name: round(net(calls, idle_calls.get(name, 0)), 4) for name, calls in w.redis_calls.items()
    }
    pg_cpu_us = net(w.backend_cpu, idle.backend_cpu if idle else 0.0) * 1e6
    return {
        "name": item.name,
        "description": item.description,
        "requests": m.requests,
        "seconds": round(m.seconds, 2),
        "rps": round(m.rps, 1),
        "errors": m.http_errors + m.socket_errors,
        "p50_ms": m.p50_ms,
        "p99_ms": m.p99_ms,
        "hotpath_cpu_us": round(m.cpu_us_per_request, 1),
        "requests_per_hotpath_core": (
            round(1e6 / m.cpu_us_per_request) if m.cpu_us_per_request > 0 else None
        ),
        "pg_xacts": round(net(w.xacts, idle.xacts if idle else 0), 3),
        "pg_xacts_raw": w.xacts,
        "pg_backend_cpu_us": round(pg_cpu_us, 1),
        "requests_per_pg_core": round(1e6 / pg_cpu_us) if pg_cpu_us > 1 else None,
        "pg_backends": w.backends,
        "redis_clients": w.redis_clients,
        "wal_bytes": round(item.wal_database / n, 1)
        if isinstance(item.wal_database, int)
        else None,
        "wal_unavailable": item.wal_database if isinstance(item.wal_database, str) else None,
        "wal_cluster_bytes": round((w.wal_end - w.wal_start) / n, 1),
        "redis_commands": round(net(w.redis_total, idle.redis_total if idle else 0), 4),
        "redis_by_command": by_command,
        "redis_cpu_us": round(net(w.redis_cpu, idle.redis_cpu if idle else 0.0) * 1e6, 2),
        "window_seconds": round(w.seconds, 2),
    }


def _idle(idle: Window | None, wal: int | str) -> dict[str, Any] | None:
    if idle is None:
        return None
    return {
        "seconds": round(idle.seconds, 2),
        "pg_xacts_per_s": round(idle.xacts / idle.seconds, 2),
        "pg_backend_cpu_ms_per_s": round(idle.backend_cpu / idle.seconds * 1e3, 3),
        "pg_backends": idle.backends,
        "redis_clients": idle.redis_clients,
        "wal_bytes": wal,
        "redis_commands_per_s": round(idle.redis_total / idle.seconds, 2),
        "redis_by_command_per_s": {
            name: round(calls / idle.seconds, 2) for name, calls in idle.redis_calls.items()
        },
    }


def model(
    by_name: dict[str, dict[str, Any]], idle: dict[str, Any] | None, pool_max: int
) -> dict[str, Any]:
    """The worked example: what READS reads/s and ORDERS orders/s take, part by part."""
    warm, uncached = by_name["warm_read"], by_name["uncached_read"]
    listing, order = by_name["list_page"], by_name["order"]
    by_id = READS * (1 - LIST_SHARE)
    rates = {  # requests/s per scenario
        "warm_read": by_id * (1 - MISS_SHARE),
        "uncached_read": by_id * MISS_SHARE,
        "list_page": READS * LIST_SHARE,
        "order": float(ORDERS),
    }
    row = {"warm_read": warm, "uncached_read": uncached, "list_page": listing, "order": order}

    # The reads' Redis figures from every read from a client new to the process, the limiter's
    # worst case, when measured.
    sparse = {**row, "warm_read": by_name.get("warm_read_clients", warm)}

    def total(field: str, rows: dict[str, dict[str, Any]] = row) -> float:
        return sum(rates[name] * max(rows[name][field] or 0.0, 0.0) for name in rates)

    hotpath_cores = total("hotpath_cpu_us") / 1e6
    workers = math.ceil(hotpath_cores / HEADROOM)
    primary_cpu = rates["order"] * max(order["pg_backend_cpu_us"], 0.0) / 1e6
    standby_cpu = (
        rates["uncached_read"] * max(uncached["pg_backend_cpu_us"], 0.0)
        + rates["list_page"] * max(listing["pg_backend_cpu_us"], 0.0)
    ) / 1e6
    redis_ops = total("redis_commands")
    redis_cpu = total("redis_cpu_us") / 1e6
    idle_xacts = idle["pg_xacts_per_s"] if idle else 0.0
    idle_redis = idle["redis_commands_per_s"] if idle else 0.0
    idle_cpu_ms = idle["pg_backend_cpu_ms_per_s"] if idle else 0.0
    # What one busy worker (a core of hotpath) asks of the standbys: its share of the misses
    # and list pages, in standby CPU µs per second.
    standby_us_per_worker_s = standby_cpu * 1e6 / hotpath_cores if hotpath_cores else 0.0
    return {
        "reads_per_s": READS,
        "orders_per_s": ORDERS,
        "rates": {name: round(rate) for name, rate in rates.items()},
        "miss_share": MISS_SHARE,
        "headroom": HEADROOM,
        "hotpath_cores": round(hotpath_cores, 1),
        "hotpath_workers": workers,
        "primary_backend_cores": round(primary_cpu, 2),
        # Every worker's background on the primary: the revocation poll (the idle window).
        "primary_idle_cores": round(workers * idle_cpu_ms / 1e3, 3),
        "primary_xacts_per_s": round(rates["order"] * order["pg_xacts"] + workers * idle_xacts),
        "primary_replica_checks_per_s": workers * REPLICA_CHECKS_PER_S,
        "wal_mb_per_s": (
            round(rates["order"] * order["wal_bytes"] / 1e6, 2) if order["wal_bytes"] else None
        ),
        "standby_backend_cores": round(standby_cpu, 2),
        "workers_per_standby_core": (
            round(1e6 / standby_us_per_worker_s, 1) if standby_us_per_worker_s > 0 else None
        ),
        "connections_without_pooler_primary": workers * pool_max,
        "connections_without_pooler_per_standby": workers * pool_max,
        "redis_ops_per_s": round(redis_ops + workers * idle_redis),
        "redis_cores": round(redis_cpu, 2),
        "redis_ops_per_s_sparse_clients": round(
            total("redis_commands", sparse) + workers * idle_redis
        ),
        "redis_cores_sparse_clients": round(total("redis_cpu_us", sparse) / 1e6, 2),
        "hotpath_cores_sparse_clients": round(total("hotpath_cpu_us", sparse) / 1e6, 1),
    }


def summarize(results: ScalingResults) -> dict[str, Any]:
    scenarios = [_scenario(item, results.idle) for item in results.scenarios]
    by_name = {row["name"]: row for row in scenarios}
    idle = _idle(results.idle, results.idle_wal_database)
    summary: dict[str, Any] = {
        "started": results.started,
        "commit": results.commit,
        "changed_in_tree": results.changed,
        "machine": {"cores": os.cpu_count(), "load_average": os.getloadavg()},
        "options": dataclasses.asdict(results.options),
        "pool_max": results.pool_max,
        "idle": idle,
        "scenarios": scenarios,
    }
    if {"warm_read", "uncached_read", "list_page", "order"} <= set(by_name):
        summary["model"] = model(by_name, idle, results.pool_max)
    return summary


_COLUMNS = (
    ("scenario", "name", "{}"),
    ("requests", "requests", "{:,}"),
    ("hotpath CPU µs", "hotpath_cpu_us", "{:,.0f}"),
    ("req/s per hotpath core", "requests_per_hotpath_core", "{:,}"),
    ("PG xacts", "pg_xacts", "{:.3f}"),
    ("PG backend CPU µs", "pg_backend_cpu_us", "{:,.0f}"),
    ("req/s per PG core", "requests_per_pg_core", "{:,}"),
    ("WAL bytes", "wal_bytes", "{:,.0f}"),
    ("Redis cmds", "redis_commands", "{:.3f}"),
    ("Redis CPU µs", "redis_cpu_us", "{:.1f}"),
    ("PG conns", "pg_backends", "{}"),
)


def _cell(value: Any, form: str) -> str:
    return "-" if value is None else form.format(value)


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Scaling figures {summary['started']}",
        "",
        f"`python -m bench.suite.scaling` at {summary['commit']}"
        + (f" (changed in the tree: {', '.join(summary['changed_in_tree'])})"
           if summary["changed_in_tree"] else "")
        + f"; {summary['machine']['cores']} cores, load average at the end "
        + ", ".join(f"{x:.1f}" for x in summary["machine"]["load_average"]) + ".",
        "One hotpath worker (production configuration"
        + (f", HOTPATH_DB_POOLER={pooler}" if (pooler := summary["options"]["pooler"]) != "none"
           else "")
        + ") on a private database of the shared PostgreSQL and a redis-server of its own;"
        " per request, net of the idle window.",
        "",
        "| " + " | ".join(title for title, _, _ in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]  # fmt: skip
    for row in summary["scenarios"]:
        lines.append("| " + " | ".join(_cell(row[key], f) for _, key, f in _COLUMNS) + " |")
    lines.append("")
    for row in summary["scenarios"]:
        commands = ", ".join(f"{k} {v:g}" for k, v in row["redis_by_command"].items()) or "none"
        wal = row["wal_unavailable"] or f"{row['wal_bytes']:,.0f} B of this database"
        lines.append(
            f"- {row['name']}: {row['description']}; {row['rps']:,.0f} req/s closed-loop, "
            f"{row['errors']} errors; Redis per request: {commands}; WAL per request: {wal} "
            f"({row['wal_cluster_bytes']:,.0f} B cluster-wide, other users included)"
        )
    if (idle := summary["idle"]) is not None:
        lines += [
            "",
            f"Idle ({idle['seconds']} s, no request): {idle['pg_xacts_per_s']} PostgreSQL "
            f"transactions/s, {idle['pg_backend_cpu_ms_per_s']} ms backend CPU/s, "
            f"{idle['pg_backends']} connections, {idle['redis_commands_per_s']} Redis "
            f"commands/s ({idle['redis_by_command_per_s']}).",
        ]
    if (m := summary.get("model")) is not None:
        lines += [
            "",
            f"## Worked example: {m['reads_per_s']:,} reads/s and {m['orders_per_s']:,} orders/s",
            "",
            f"Rates: {m['rates']} ({m['miss_share']:.0%} of reads by id miss the cache); "
            f"cores planned {m['headroom']:.0%} busy.",
            "",
            f"- hotpath: {m['hotpath_cores']} cores busy, {m['hotpath_workers']} workers",
            f"- primary: {m['primary_backend_cores']} backend cores for the orders, "
            f"{m['primary_xacts_per_s']:,} transactions/s, "
            f"{m['primary_replica_checks_per_s']:,} replica checks/s, "
            f"WAL {m['wal_mb_per_s']} MB/s",
            f"- standbys: {m['standby_backend_cores']} backend cores for misses and lists; "
            f"one standby core serves {m['workers_per_standby_core']} busy workers",
            f"- connections without a pooler: {m['connections_without_pooler_primary']:,} on "
            f"the primary and as many on each standby",
            f"- Redis: {m['redis_ops_per_s']:,} commands/s, {m['redis_cores']} cores; with every "
            f"read from a client new to its process, {m['redis_ops_per_s_sparse_clients']:,} "
            f"commands/s, {m['redis_cores_sparse_clients']} cores (hotpath "
            f"{m['hotpath_cores_sparse_clients']} cores)",
        ]
    return "\n".join(lines) + "\n"


def write(results: ScalingResults, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    stamp = results.started.replace(":", "-").split("+")[0]
    if results.options.pooler != "none":
        stamp += f"-pooler-{results.options.pooler}"
    paths = {
        "json": directory / f"scaling-{stamp}.json",
        "md": directory / f"scaling-{stamp}.md",
    }
    paths["json"].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    paths["md"].write_text(markdown(summary))
    return paths
