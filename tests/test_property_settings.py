"""Property tests run without a per-example deadline: the suite's Hypothesis profile
(tests/conftest.py) sets none, and every @given test inherits it."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

TESTS = Path(__file__).parent


def property_tests() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        if "hypothesis" not in path.read_text(encoding="utf-8"):
            continue
        name = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        for attribute, value in vars(importlib.import_module(name)).items():
            if attribute.startswith("test_") and hasattr(value, "hypothesis"):
                found.append((f"{name}.{attribute}", value))
    return found


def test_the_profile_sets_no_deadline() -> None:
    assert settings().deadline is None  # what a bare @settings() inherits


PROPERTY_TESTS = property_tests()


@pytest.mark.parametrize("test", [t for _, t in PROPERTY_TESTS], ids=[n for n, _ in PROPERTY_TESTS])
def test_every_property_test_runs_without_a_deadline(test: Callable[..., Any]) -> None:
    applied = getattr(inspect.unwrap(test), "_hypothesis_internal_use_settings", None)
    assert isinstance(applied, settings)
    assert applied.deadline is None
