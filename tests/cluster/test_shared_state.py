"""Three replicas behind nginx behave as one service: one rate limit for all of them, and a
logout, an API-key revocation or a product write made through nginx (on whichever replica it
lands) is seen by every replica, asked directly, within a second."""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import READ_RATE, LocalCluster, session

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
COUNT_STATUSES = Path(__file__).parents[1] / "e2e" / "count_statuses.lua"
SECONDS = 3
LIMIT_S = 1.0


def test_one_rate_limit_across_three_replicas(cluster: LocalCluster) -> None:
    _, headers = session(cluster)  # the limit's key: this user, whichever replica serves it
    agent = f"wrk-{secrets.token_hex(4)}"
    run = subprocess.run(
        ["wrk", "-t1", "-c6", f"-d{SECONDS}s", "-s", str(COUNT_STATUSES),
         "-H", f"Authorization: {headers['authorization']}", "-H", f"User-Agent: {agent}",
         cluster.url + "/v1/products?limit=1"],
        capture_output=True, text=True, timeout=SECONDS + 60, check=False,
    )  # fmt: skip
    found = re.search(r"COUNTS (\d+) (\d+) (\d+) (\d+) (\d+)", run.stdout)
    assert found, run.stdout + run.stderr
    admitted, limited, failed, micros, _ = (int(group) for group in found.groups())
    seconds = micros / 1e6
    offered = (admitted + limited) / seconds
    expected = READ_RATE + READ_RATE * seconds  # the burst, then the rate
    figures = (
        f"{admitted} admitted of {admitted + limited} in {seconds:.2f} s ({offered:.0f}/s"
        f" offered); the limit allows {expected:.0f} ({READ_RATE}/s and a {READ_RATE} burst)"
    )
    # Well past the limit all along (a loaded 2-core box gives wrk no more than twice it).
    assert offered > 1.5 * READ_RATE, f"the load never pressed the limit: {figures}"
    assert failed == 0, f"{failed} answers 5xx: {figures}"
    assert abs(admitted - expected) <= 0.05 * expected, figures
    served = Counter(
        line["upstream"]
        for line in cluster.nginx_log()
        if line["status"] == 200 and line["user_agent"] == agent
    )
    addresses = {f"127.0.0.1:{replica['port']}" for replica in cluster.replicas()}
    assert addresses <= set(served), f"not every replica took part: {dict(served)}"


def seconds_until_everywhere(
    cluster: LocalCluster, seen: Callable[[httpx.Client, str], bool]
) -> dict[int, float]:
    """Per replica (asked directly, not through nginx): seconds until ``seen`` holds there."""
    started = time.monotonic()
    pending = {replica["index"]: replica["url"] for replica in cluster.replicas()}
    found: dict[int, float] = {}
    with httpx.Client(timeout=5) as client:
        while pending:
            for index, url in list(pending.items()):
                if seen(client, url):
                    found[index] = time.monotonic() - started
                    del pending[index]
            if time.monotonic() - started > 3 * LIMIT_S:
                raise AssertionError(f"replicas {sorted(pending)} still had not seen it: {found}")
            time.sleep(0.01)
    return found


def on_every_replica(cluster: LocalCluster, status: Callable[[httpx.Client, str], int]) -> None:
    with httpx.Client(timeout=5) as client:
        for replica in cluster.replicas():
            assert status(client, replica["url"]) == 200, replica


def test_a_logout_reaches_every_replica(cluster: LocalCluster) -> None:
    _, headers = session(cluster)
    me = "/v1/users/me"
    on_every_replica(cluster, lambda http, url: http.get(url + me, headers=headers).status_code)
    assert httpx.post(cluster.url + "/v1/auth/logout", headers=headers).status_code == 204
    took = seconds_until_everywhere(
        cluster, lambda http, url: http.get(url + me, headers=headers).status_code == 401
    )
    assert max(took.values()) < LIMIT_S, f"seconds until each replica refused the token: {took}"


def test_an_api_key_revocation_reaches_every_replica(cluster: LocalCluster) -> None:
    _, admin = session(cluster, "admin")
    created = httpx.post(
        cluster.url + "/v1/api-keys", json={"name": "cluster", "scopes": []}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = {"x-api-key": created.json()["key"]}
    me = "/v1/users/me"
    on_every_replica(cluster, lambda http, url: http.get(url + me, headers=key).status_code)
    revoked = httpx.delete(cluster.url + f"/v1/api-keys/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 204, revoked.text
    took = seconds_until_everywhere(
        cluster, lambda http, url: http.get(url + me, headers=key).status_code == 401
    )
    assert max(took.values()) < LIMIT_S, f"seconds until each replica refused the key: {took}"


def test_a_product_write_reaches_every_replica(cluster: LocalCluster) -> None:
    _, staff = session(cluster, "staff")
    created = httpx.post(
        cluster.url + "/v1/products",
        json={
            "sku": f"cluster-{secrets.token_hex(5)}",
            "name": "Before",
            "category": "cluster",
            "price": {"amount_minor": 100, "currency": "EUR"},
            "stock": 3,
        },
        headers=staff,
    )
    assert created.status_code == 201, created.text
    path = f"/v1/products/{created.json()['id']}"
    on_every_replica(cluster, lambda http, url: http.get(url + path).status_code)  # cached
    changed = httpx.patch(
        cluster.url + path,
        json={"name": "After"},
        headers={**staff, "if-match": created.headers["etag"]},
    )
    assert changed.status_code == 200, changed.text
    took = seconds_until_everywhere(
        cluster, lambda http, url: http.get(url + path).json()["name"] == "After"
    )
    assert max(took.values()) < LIMIT_S, f"seconds until each replica served the write: {took}"
