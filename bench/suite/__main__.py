"""``python -m bench.suite``: run the scenarios and write the report (``make bench``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from bench.suite.report import write
from bench.suite.run import run_suite
from bench.suite.state import Options

RESULTS = Path(__file__).resolve().parents[1] / "results"
# A few seconds per scenario: enough to prove every part still runs, not to measure.
SMOKE = Options(
    seconds=1,
    warmup=0,
    connections=8,
    pool_size=3,
    products=500,
    hot_products=200,
    accounts=2,
    deep_pages=3,
    artillery_rate=2,
    artillery_seconds=4,
    budget_rounds=2,
    budget_seconds=1,
    webhook_events=50,
    login_seconds=6,
    openloop_rounds=2,
    openloop_seconds=1,
    openloop_warmup=0.5,
    profile_scenarios=("product_get",),
    profile_seconds=1,
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per scenario")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--seconds", type=float, help="measured seconds per scenario")
    parser.add_argument("--no-artillery", action="store_true", help="skip the open-model run")
    args = parser.parse_args(argv)
    options = SMOKE if args.smoke else Options()
    if args.seconds:
        options = dataclasses.replace(options, seconds=args.seconds)
    if args.no_artillery:
        options = dataclasses.replace(options, artillery=False)
    paths = write(run_suite(options), args.out)
    print(paths["md"].read_text())
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
