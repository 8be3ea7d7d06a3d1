"""A replica killed with SIGKILL under load (all its processes at once, as an out-of-memory kill
takes a container): nginx stops sending it traffic, only requests it had in flight fail, no POST
is sent to a second replica after reaching the first, and the order history holds (no order
lost, none placed twice)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import LocalCluster, read_json_lines
from tests.cluster.load import attempts, started, through

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
GRACE = 2.0  # seconds nginx may go on trying the dead replica (each try refused and moved on)
# Killed processes still hold their sockets until they have run their exit: a connection the
# kernel accepts for them meanwhile is in flight there too.
DYING = 0.25


def test_a_killed_replica_fails_only_its_requests_in_flight(cluster: LocalCluster) -> None:
    victim = cluster.replicas()[0]
    address = f"127.0.0.1:{victim['port']}"
    killed: list[float] = []

    def replaced(state: dict[str, Any]) -> bool:
        return any(
            r["index"] == victim["index"] and r["pid"] != victim["pid"] and r["ready"]
            for r in state["replicas"]
        )

    def kill() -> None:
        os.killpg(victim["pid"], signal.SIGKILL)
        killed.append(time.time())
        cluster.wait_until("the killed replica is replaced", replaced, 120)

    run = asyncio.run(through(cluster, kill, seed=2))
    at = killed[0]
    served = [line for line in run.lines if address in dict(attempts(line)) and started(line) < at]
    assert served, f"the killed replica had served none of the load: {run.figures()}"

    in_flight = [
        line
        for line in run.lines
        if address in dict(attempts(line)) and started(line) <= at + DYING and line["ts"] >= at
    ]
    failed = run.failed()
    figures = (
        f"{len(failed)} failed, {len(in_flight)} in flight on {address} at the kill;"
        f" {run.figures()}"
    )
    for line in failed:
        tried = attempts(line)
        assert tried[-1][0] == address, f"a failure elsewhere than the killed replica: {line}"
        assert started(line) <= at + DYING, f"sent after the kill, failed: {line}; {figures}"
    assert len(failed) <= len(in_flight), figures

    after = [
        line for line in run.lines if address in dict(attempts(line)) and started(line) > at + DYING
    ]
    for line in after:
        assert line["status"] < 500, f"{line}; {figures}"
        assert attempts(line)[-1][0] != address, line
        assert started(line) < at + GRACE, (
            f"nginx still tried {address} {started(line) - at:.1f} s after the kill: {line}"
        )

    for line in run.lines:
        if line["method"] == "POST":
            sent = [a for a, sent_bytes in attempts(line) if sent_bytes != "0"]
            assert len(sent) <= 1, f"a POST sent to {sent}: {line}"
    ids = [
        line["http.request.id"]
        for replica in [*cluster.replicas(), *cluster.state()["retired"]]
        for line in read_json_lines(Path(replica["log"]))
        if line.get("message") == "http_request" and line.get("http.request.id")
    ]
    duplicated = {i for i in ids if ids.count(i) > 1} & {line["request_id"] for line in run.lines}
    assert not duplicated, f"requests served by two replicas: {sorted(duplicated)[:5]}"
    assert not run.problems, run.problems
