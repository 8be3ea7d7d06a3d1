"""The soak's verdict (bench/soak/report.py) on made-up windows: a run that stays level is
flat, and each way of not staying level is caught. The soak itself (make soak) is not run here:
it takes half an hour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak.report import failures, markdown, write
from bench.soak.run import Options, Soak, Window
from bench.soak.sample import Pool, Process
from bench.suite.wrk import Measured

WINDOWS = 40


MEASURED: dict[str, Any] = {
    "requests": 20_000, "seconds": 10, "http_errors": 0, "socket_errors": 0, "p50_ms": 1.0,
    "p90_ms": 2.0, "p99_ms": 5.0, "max_ms": 20.0, "cpu_seconds": 3.0,
}  # fmt: skip
PROCESS: dict[str, Any] = {"rss_mb": 120.0, "rss_total_mb": 200.0, "fds": 70, "processes": 3,
                           "load": 1.0}  # fmt: skip
POOL: dict[str, Any] = {"idle": 8, "used": 2, "max": 10, "pending": 0, "timeouts": 0}


def window(index: int, **change: float) -> Window:
    def changed(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, **{k: v for k, v in change.items() if k in fields}}

    return Window(
        index,
        index * 10.0,
        Measured(**changed(MEASURED)),
        Process(**changed(PROCESS)),
        Pool(**changed(POOL)),
    )


def soak(late: dict[str, float] | None = None, *, from_window: int = WINDOWS - 4) -> Soak:
    """A soak whose windows from ``from_window`` on have the values in ``late``."""
    windows = [window(n, **(late or {}) if n >= from_window else {}) for n in range(WINDOWS)]
    return Soak("2026-01-01T00:00:00+00:00", Options(minutes=400 / 60), windows)


def test_a_level_run_is_flat() -> None:
    assert failures(soak()) == []


def test_noise_within_the_bounds_is_flat() -> None:
    assert failures(soak({"rss_mb": 130.0, "fds": 75, "p99_ms": 8.0, "used": 3})) == []


@pytest.mark.parametrize(
    ("late", "measure"),
    [
        ({"rss_mb": 140.0}, "RSS, largest process"),  # a leak: +17%
        ({"rss_total_mb": 240.0}, "RSS, all processes"),
        ({"fds": 90}, "open file descriptors"),  # descriptors that are never closed
        ({"p99_ms": 20.0}, "p99 latency"),
        ({"used": 10}, "pool connections in use"),  # connections that are never given back
        ({"pending": 6}, "requests waiting for the pool"),
    ],
)
def test_growth_in_the_last_tenth_is_caught(late: dict[str, float], measure: str) -> None:
    found = failures(soak(late))
    assert len(found) == 1
    assert found[0].startswith(measure + ":")


def test_errors_and_pool_timeouts_are_caught() -> None:
    assert failures(soak({"http_errors": 3}, from_window=20)) == [
        f"window {n}: 3 HTTP, 0 socket errors" for n in range(20, WINDOWS)
    ]
    assert failures(soak({"timeouts": 2}, from_window=39)) == [
        "2 pool waits timed out during the run"
    ]


def test_the_report_says_whether_it_was_flat(tmp_path: Path) -> None:
    machine = {"cpu": "test", "cores": 2, "python": "3.11", "granian": "2"}
    assert "**Flat**" in markdown(soak(), machine)
    leaking = markdown(soak({"rss_mb": 200.0}), machine)
    assert "**Not flat**" in leaking
    assert (
        "| RSS, largest process | 120.0 MB | 200.0 MB | 137.0 MB (x1.1 + 5) | **no** |" in leaking
    )
    paths = write(soak(), tmp_path)
    assert sorted(p.name for p in paths.values()) == [
        "soak-2026-01-01T00-00-00.json",
        "soak-2026-01-01T00-00-00.md",
    ]
