"""Multiprocess mode is decided in one place: server/runtime/metrics.py reads the variable and
everything else asks it (middleware, which never imports server/, is told by the app)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.runtime import metrics

ROOT = Path(__file__).parents[2]


def python_files(folder: Path) -> list[Path]:
    found = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = [name for name in subdirectories if name != "node_modules"]
        found += [Path(directory, name) for name in names if name.endswith(".py")]
    return found


def test_only_the_runtime_metrics_module_names_the_variable() -> None:
    quoted = {f'"{metrics.MULTIPROC_ENV}"', f"'{metrics.MULTIPROC_ENV}'"}
    naming = sorted(
        str(path.relative_to(ROOT))
        for folder in ("server", "middleware", "bench")
        for path in python_files(ROOT / folder)
        if any(spelling in path.read_text(encoding="utf-8") for spelling in quoted)
    )
    assert naming == ["server/runtime/metrics.py"]


def test_the_mode_follows_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    assert not metrics.multiprocess_mode()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    assert not metrics.multiprocess_mode()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "/tmp/metrics")
    assert metrics.multiprocess_mode()
