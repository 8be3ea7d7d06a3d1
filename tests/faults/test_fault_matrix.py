"""The fault matrix: PostgreSQL and Redis of the tests' own, each killed (SIGKILL), paused
(SIGSTOP, then SIGCONT) and shut down and restarted, under a bounded load of buyers, readers
of cached products and readers that need PostgreSQL (tests/fixtures/fault_load.py).

For every fault: the system is healthy again within RECOVERY_LIMIT of the heal, and the
orders placed through it agree with the database (tests/fixtures/order_history.py). While
Redis is gone nothing answers 5xx, the cached product reads above all. While PostgreSQL is
gone every request that needs it answers 503 with Retry-After within the bounds README
documents (Overload; docs/decisions/0009-stalled-postgres.md): HOTPATH_DB_ACQUIRE_TIMEOUT
when PostgreSQL is unreachable, and the same when it stops answering with its connections
open, except at most one request per pool connection (its statement already sent), which
waits for the statement's timeout and then at most HOTPATH_DB_ACQUIRE_TIMEOUT more.

Run by `make test-faults` (marker `faults`), not by `make test`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.fixtures.fault_load import Answer
from tests.fixtures.faults import (
    DB_ACQUIRE_TIMEOUT,
    DB_COMMAND_TIMEOUT,
    DB_POOL_MAX,
    REQUEST_TIMEOUT,
    FaultRun,
    Stack,
    shut_down_redis,
    signal_redis,
    through_fault,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

# Scheduling on a shared two-core box, the client's own work and the way back: added to every
# documented bound below.
SLACK = 0.75
# README (Overload): "an exhausted pool or an unreachable PostgreSQL is a 503
# database-unavailable within HOTPATH_DB_ACQUIRE_TIMEOUT"; so is, for almost every request, one
# that stops answering without closing its connections.
UNREACHABLE_DB_BOUND = DB_ACQUIRE_TIMEOUT + SLACK
# README (Overload): the exceptions, requests whose statement was already sent, wait for the
# statement's timeout (HOTPATH_DB_COMMAND_TIMEOUT, or the request's time left if less), then at
# most HOTPATH_DB_ACQUIRE_TIMEOUT for its cancel; "at most one request per pool connection
# answers that late".
HUNG_DB_BOUND = min(DB_COMMAND_TIMEOUT, REQUEST_TIMEOUT) + DB_ACQUIRE_TIMEOUT + SLACK
LATE_AT_MOST = DB_POOL_MAX
# From the heal (SIGCONT, or the start command, which includes crash recovery) to /readyz and
# a PostgreSQL read answering 200 again.
RECOVERY_LIMIT = 15.0
# What reads need PostgreSQL (the product reads may be served by a cache).
NEEDS_POSTGRES = ("probe", "order", "cancel")
ALL_KINDS = ("read", *NEEDS_POSTGRES)


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Stack], None]
    heal: Callable[[Stack], None]
    hold: float  # seconds the fault lasts
    bound: float | None  # PostgreSQL faults: the most an answer may take


def _restart_postgres(stack: Stack) -> None:
    stack.postgres.start()


def _restart_redis(stack: Stack) -> None:
    stack.redis.start()


FAULTS = [
    Fault(
        "redis-killed",
        lambda s: s.redis.kill(),
        _restart_redis,
        hold=6.0,
        bound=None,
    ),
    Fault(
        "redis-paused",
        lambda s: signal_redis(s.redis, signal.SIGSTOP),
        lambda s: signal_redis(s.redis, signal.SIGCONT),
        hold=6.0,
        bound=None,
    ),
    Fault(
        "redis-restarted",
        lambda s: shut_down_redis(s.redis),
        _restart_redis,
        hold=3.0,
        bound=None,
    ),
    Fault(
        "postgres-killed",
        lambda s: s.postgres.kill(),
        _restart_postgres,
        hold=6.0,
        bound=UNREACHABLE_DB_BOUND,
    ),
    # Held past the longest documented wait, so requests caught by the pause show where they
    # end, and several housekeeping rounds pass.
    Fault(
        "postgres-paused",
        lambda s: s.postgres.pause(),
        lambda s: s.postgres.resume(),
        hold=HUNG_DB_BOUND + 2.0,
        bound=HUNG_DB_BOUND,
    ),
    Fault(
        "postgres-restarted",
        lambda s: s.postgres.shut_down(),
        _restart_postgres,
        hold=2.0,
        bound=UNREACHABLE_DB_BOUND,
    ),
]


def _show(answers: list[Answer]) -> list[str]:
    return [f"{a.kind} +{a.seconds:.2f}s {a.status} {a.problem or a.error or ''}" for a in answers]


def overlapping(run: FaultRun, kinds: tuple[str, ...]) -> list[Answer]:
    """Answers to requests in flight at any moment of the fault."""
    return [
        a
        for a in run.load.answers
        if a.kind in kinds and a.started <= run.healed_at and a.ended >= run.fault_at
    ]


def assert_consistent_and_recovered(run: FaultRun) -> None:
    assert run.problems == [], run.problems[:20]
    assert run.load.history.count_acknowledged_after(run.healed_at + run.recovered_in) > 0
    after = [a for kind in ("read", *NEEDS_POSTGRES) for a in run.after_recovery(kind)]
    failed = [a for a in after if a.status is None or a.status >= 500]
    assert after
    assert not failed, _show(failed[:20])


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_fault(fault_stack: Stack, fault: Fault) -> None:
    run = await through_fault(
        fault_stack,
        fault=lambda: fault.inject(fault_stack),
        heal=lambda: fault.heal(fault_stack),
        hold=fault.hold,
        recovery_limit=RECOVERY_LIMIT,
        seed=FAULTS.index(fault),
    )
    print(fault.name, run.load.history.summary(), f"recovered in {run.recovered_in:.2f} s")
    if fault.bound is None:
        # Redis gone: every answer is what it would have been, the cached reads above all.
        reads = overlapping(run, ("read",))
        assert len(reads) >= 5, "too few cached reads to say anything"
        bad_reads = [a for a in reads if a.status != 200]
        assert not bad_reads, _show(bad_reads[:20])
        others = [
            a for a in overlapping(run, NEEDS_POSTGRES) if a.status is None or a.status >= 500
        ]
        assert not others, _show(others[:20])
    else:
        caught = overlapping(run, NEEDS_POSTGRES)
        refused = [a for a in caught if a.status == 503]
        assert refused, "the fault changed nothing: " + repr(_show(caught[:10]))
        unanswered = [a for a in caught if a.status is None]
        assert not unanswered, _show(unanswered[:20])
        # The bound is the refusal's: a 503 comes within it. A request that got through (sent
        # as the fault began or ended) is bounded by its deadline only.
        late = [a for a in caught if a.seconds > fault.bound and (a.status or 500) >= 500]
        assert not late, (fault.bound, _show(late[:20]))
        overdue = [a for a in caught if a.seconds > REQUEST_TIMEOUT + SLACK]
        assert not overdue, _show(overdue[:20])
        # Refused past the acquire timeout: at most one request per pool connection.
        slow = [
            a
            for a in overlapping(run, ALL_KINDS)
            if a.seconds > UNREACHABLE_DB_BOUND and (a.status or 500) >= 500
        ]
        assert len(slow) <= LATE_AT_MOST, _show(slow)
        wrong = [
            a
            for a in caught
            if a.status is not None
            and a.status >= 500
            and (a.status != 503 or not (a.retry_after or "").isdigit())
        ]
        assert not wrong, _show(wrong[:20])
    assert_consistent_and_recovered(run)
