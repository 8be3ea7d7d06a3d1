"""The open-model scenario: Artillery runs ``bench/artillery/mixed.yml`` against one server.

New virtual users arrive at a fixed rate whether or not the server keeps up, so a slow server
shows queueing in its latencies instead of being offered less load, as wrk's closed loop does.
Each one logs in, then reads products (~90%) and places orders (~10%): 20 requests a user.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

ARTILLERY_DIR = Path(__file__).resolve().parents[1] / "artillery"
SCENARIO = ARTILLERY_DIR / "mixed.yml"
ARTILLERY_BIN = ARTILLERY_DIR / "node_modules" / ".bin" / "artillery"
_INSTALL_TIMEOUT = 600
# Starting Node and its workers, letting the last arrivals finish their 20 requests, writing
# the report: all on top of the phase itself.
_RUN_SLACK = 120
_TAIL_CHARS = 3000
_PERCENTILES = ("p50", "p90", "p95", "p99", "max")
_BY_REQUEST = "plugins.metrics-by-endpoint.response_time."


def artillery_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def run_artillery(
    base_url: str,
    credentials: Sequence[tuple[str, str]],
    product_count: int,
    *,
    arrival_rate: int,
    duration: int,
    workdir: Path,
) -> dict[str, object]:
    """Run the scenario for ``duration`` seconds at ``arrival_rate`` new users a second, each
    logging in as one of ``credentials`` (email, password) and using product ids
    1..``product_count``; return the summary of Artillery's JSON report."""
    if not credentials:
        raise ValueError("run_artillery needs at least one account")
    if min(product_count, arrival_rate, duration) < 1:
        raise ValueError("product_count, arrival_rate and duration must be at least 1")
    artillery = ensure_installed()
    payload = write_payload(credentials, workdir / "artillery-credentials.csv")
    report = workdir / "artillery.json"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ARTILLERY_DISABLE_TELEMETRY": "true",
        "TARGET": base_url,
        "ARRIVAL_RATE": str(arrival_rate),
        "DURATION": str(duration),
        "PRODUCT_COUNT": str(product_count),
    }
    command = [str(artillery), "run", "--payload", str(payload), "--output", str(report)]
    _run_checked([*command, str(SCENARIO)], env, duration + _RUN_SLACK, cwd=workdir)
    if not report.exists():
        raise RuntimeError(f"artillery exited without writing {report}")
    summary = summarise(orjson.loads(report.read_bytes()))
    return {"arrival_rate": arrival_rate, "duration_s": duration, **summary}


def ensure_installed() -> Path:
    """Install the locked Artillery into bench/artillery/node_modules unless it is there."""
    if not ARTILLERY_BIN.exists():
        # --ignore-scripts: Playwright (an Artillery dependency) would download a browser on
        # install, which an HTTP scenario never starts and an offline box cannot fetch.
        command = ["npm", "ci", "--prefix", str(ARTILLERY_DIR), "--no-audit", "--no-fund"]
        _run_checked([*command, "--ignore-scripts"], dict(os.environ), _INSTALL_TIMEOUT)
    return ARTILLERY_BIN


def write_payload(credentials: Sequence[tuple[str, str]], path: Path) -> Path:
    """The CSV mixed.yml reads with ``--payload``: ``email,password`` rows, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(credentials)
    return path


def summarise(report: Mapping[str, Any]) -> dict[str, object]:
    """The aggregate of an Artillery JSON report as plain numbers, latencies in ms: overall and
    per request name of mixed.yml (login, product_get, order_place)."""
    aggregate = report["aggregate"]
    counters: Mapping[str, int] = aggregate.get("counters", {})
    summaries: Mapping[str, Mapping[str, float]] = aggregate.get("summaries", {})
    codes = _with_prefix(counters, "http.codes.")
    return {
        "requests": counters.get("http.requests", 0),
        "responses": codes,
        "errors": _with_prefix(counters, "errors."),
        "non_2xx": sum(count for code, count in codes.items() if not code.startswith("2")),
        "latency_ms": _percentiles(summaries.get("http.response_time", {})),
        "latency_ms_by_request": {
            key.removeprefix(_BY_REQUEST): _percentiles(summary)
            for key, summary in sorted(summaries.items())
            if key.startswith(_BY_REQUEST)
        },
        "vusers": {
            "created": counters.get("vusers.created", 0),
            "completed": counters.get("vusers.completed", 0),
            "failed": counters.get("vusers.failed", 0),
        },
    }


def _percentiles(summary: Mapping[str, float]) -> dict[str, float | None]:
    return {name: summary.get(name) for name in _PERCENTILES}


def _with_prefix(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {
        key.removeprefix(prefix): count
        for key, count in sorted(counters.items())
        if key.startswith(prefix)
    }


def _run_checked(
    command: list[str], env: dict[str, str], timeout: float, *, cwd: Path | None = None
) -> None:
    name = Path(command[0]).name
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise RuntimeError(f"{name} is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{name} did not finish within {timeout:g} s:\n{_tail(exc.output)}"
        ) from exc
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{_tail(done.stdout)}")


def _tail(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return (output or "")[-_TAIL_CHARS:]
