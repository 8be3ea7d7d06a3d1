"""``python -m bench.soak``: the mixed load for a while, then whether memory, descriptors,
the pool and p99 stayed flat (``make soak``: 30 minutes; ``--minutes 2`` to try it). Exits 1
when they did not; writes bench/results/soak-<date>.{md,json} either way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.soak.report import failures, write
from bench.soak.run import Options, Window, run_soak

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _progress(window: Window) -> None:
    m, p, q = window.measured, window.process, window.pool
    print(
        f"t={window.at:6.0f}s {m.rps:8,.0f} req/s p99 {m.p99_ms:7.2f} ms "
        f"errors {m.http_errors + m.socket_errors} RSS {p.rss_mb:6.1f} MB fds {p.fds} "
        f"pool used {q.used:.0f} waiting {q.pending:.0f}",
        flush=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    defaults = Options()
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--interval", type=float, default=defaults.interval,
                        help="seconds per load window and between samples")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=defaults.warmup)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    args = parser.parse_args(argv)
    options = Options(
        minutes=args.minutes,
        interval=args.interval,
        warmup=args.warmup,
        connections=args.connections,
    )
    soak = run_soak(options, on_window=_progress)
    paths = write(soak, args.out)
    print(paths["md"].read_text())
    for path in paths.values():
        print(path)
    return 1 if failures(soak) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
