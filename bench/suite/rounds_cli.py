"""The command line the alternating-rounds benches share (``bench.suite.attribution``,
``bench.suite.tracing``): their common options, and how a result is given back (its Markdown
table printed; with ``--out``, the figures as JSON too)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import orjson


def rounds_parser(
    module: str, description: str | None, *, rounds: int, seconds: float
) -> argparse.ArgumentParser:
    """A parser for ``python -m module`` with ``--rounds``, ``--seconds`` and ``--out``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    return parser


def give_back(
    result: dict[str, object], table: Callable[[dict[str, object]], str], out: Path | None
) -> int:
    """Prints ``table(result)``, writes ``result`` to ``out`` when given; the exit status."""
    print(table(result))
    if out is not None:
        out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0
