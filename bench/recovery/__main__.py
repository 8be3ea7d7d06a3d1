"""``python -m bench.recovery`` (``make bench-recovery``): how long a point-in-time restore
with the shipped pgBackRest configuration takes and how much a lost host takes with it
(bench/recovery/measure.py), and how long a logical backup and its checked restore take
(bench/recovery/logical.py). Prints tables; docs/disaster-recovery.md quotes them."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.recovery.logical import measure_logical
from bench.recovery.measure import measure_recovery, measure_rpo

# The PITR test's size (a few orders), then a larger database with a day's worth of WAL.
SIZES = ((6, 4), (200_000, 50_000))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--no-rpo", action="store_true", help="skip the RPO wait (minutes)")
    args = parser.parse_args(argv)
    print("| orders in backup | orders in WAL | database MB | WAL replayed MB | restore s "
          "| replay + promote s | RTO s |", flush=True)  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for orders, after in SIZES:
        r = asyncio.run(measure_recovery(orders, after))
        assert r.orders_found == orders + after, r
        print(
            f"| {r.orders:,} | {r.orders_after:,} | {r.database_mb:.1f} | {r.wal_replayed_mb:.1f} "
            f"| {r.restore_seconds:.1f} | {r.replay_seconds:.1f} | {r.rto_seconds:.1f} |",
            flush=True,
        )
    print("\n| orders | dump MB | python -m server backup s | restore --verify s |")
    print("|---:|---:|---:|---:|")
    for orders, _ in SIZES:
        logical = asyncio.run(measure_logical(orders))
        print(
            f"| {logical.orders:,} | {logical.dump_mb:.1f} | {logical.backup_seconds:.1f} "
            f"| {logical.restore_verify_seconds:.1f} |",
            flush=True,
        )
    if not args.no_rpo:
        print()
        for fresh, state in ((False, "a running server"), (True, "a server just started")):
            seconds, timeout, checkpoints = asyncio.run(measure_rpo(fresh=fresh))
            print(f"RPO on {state}: a commit into a fresh WAL segment was archived "
                  f"{seconds:.1f} s later (archive_timeout = {timeout}, "
                  f"checkpoint_timeout = {checkpoints})", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
