"""A rolling restart under load (SIGHUP to the cluster: each replica in turn replaced by a new
one, then sent SIGTERM, drained and stopped): no request nginx accepted fails, and no replica
answers a request once its drain has begun."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

import pytest

from tests.cluster.conftest import LocalCluster, read_json_lines
from tests.cluster.load import attempts, started, through

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_a_rolling_restart_under_load_fails_no_request(cluster: LocalCluster) -> None:
    before = cluster.state()

    def roll() -> None:
        os.kill(before["pid"], signal.SIGHUP)
        cluster.wait_until("the roll is done", lambda s: s["rolls"] == before["rolls"] + 1, 180)

    run = asyncio.run(through(cluster, roll, seed=1))
    assert run.lines, "no load went through nginx"
    assert not run.failed(), f"{len(run.failed())} failed: {run.failed()[:3]}; {run.figures()}"
    assert not run.problems, run.problems

    rolled = [
        r for r in cluster.state()["retired"] if r["at"] >= run.began and r["why"] == "rolled"
    ]
    assert sorted(r["index"] for r in rolled) == [1, 2, 3], rolled
    ids = {line["request_id"] for line in run.lines}
    for replica in rolled:
        address = f"127.0.0.1:{replica['port']}"
        log = read_json_lines(Path(replica["log"]))
        (drain,) = [line for line in log if line.get("message") == "draining"]
        answered = [line for line in log if line.get("http.request.id") in ids]
        # ISO 8601 stamps of one format and zone: ordered as strings. nginx's are epochs.
        late = [line for line in answered if line["@timestamp"] > drain["@timestamp"]]
        drained_at = dt.datetime.fromisoformat(drain["@timestamp"]).timestamp()
        sent = [line for line in run.lines if address in dict(attempts(line))]
        sent_late = [line for line in sent if started(line) > drained_at]
        assert answered, f"replica {replica['index']} served none of the load before its roll"
        assert not late, (
            f"replica {replica['index']} ({address}) answered {len(late)} of its"
            f" {len(answered)} requests after its drain began: {late[:3]}"
        )
        assert not sent_late, f"nginx sent {len(sent_late)} requests to {address} after its drain"
    newcomers = {f"127.0.0.1:{r['port']}" for r in cluster.replicas()}
    served = {address for line in run.lines for address, _ in attempts(line)}
    assert newcomers <= served, f"a new replica got no traffic: {newcomers - served}"
