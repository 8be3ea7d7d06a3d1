"""Bounded load through nginx for the cluster's restart tests (the fault matrix's clients,
tests/fixtures/fault_load.py: buyers ordering with fresh Idempotency-Keys and cancelling,
readers, probers), and how to read nginx's access log of it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.cluster.conftest import LocalCluster
from tests.fixtures.fault_load import Answer, Customer, Load
from tests.fixtures.order_history import check
from tests.fixtures.servers import login
from tests.fixtures.users import insert_user

BUYERS = 3
STOCK = 100_000
STEADY = 1.5  # seconds of load before the event and after it


@dataclass
class LoadRun:
    load: Load
    lines: list[dict[str, Any]]  # nginx's access log lines of the requests the load sent
    began: float  # time.time() of the event (a SIGHUP sent, a replica killed)
    problems: list[str] = field(default_factory=list)  # the order history against the database

    def failed(self) -> list[dict[str, Any]]:
        """Requests nginx accepted and answered with a 5xx."""
        return [line for line in self.lines if line["status"] >= 500]

    def unanswered(self) -> list[Answer]:
        """Requests that got no answer at all (a connection nginx closed before reading
        one, during a reload): nginx never accepted them."""
        return [answer for answer in self.load.answers if answer.status is None]

    def figures(self) -> str:
        statuses: dict[int, int] = {}
        for line in self.lines:
            statuses[line["status"]] = statuses.get(line["status"], 0) + 1
        return (
            f"nginx accepted {len(self.lines)} requests {dict(sorted(statuses.items()))};"
            f" {len(self.unanswered())} got no answer; orders {self.load.history.summary()}"
        )


def attempts(line: dict[str, Any]) -> list[tuple[str, str]]:
    """(replica address, bytes nginx sent it) for every replica nginx tried, in order."""

    def split(value: str) -> list[str]:
        return [part.strip() for part in value.replace(" : ", ", ").split(",") if part.strip()]

    return list(zip(split(line["upstream"]), split(line["upstream_bytes_sent"]), strict=True))


def started(line: dict[str, Any]) -> float:
    """When nginx read the request (it logs when it is done with it)."""
    ts: float = line["ts"] - line["request_time"]
    return ts


async def customers_and_products(cluster: LocalCluster) -> tuple[list[Customer], dict[int, int]]:
    customers = []
    for _ in range(BUYERS):
        user_id, email, password = await insert_user(cluster.database_url)
        token = await asyncio.to_thread(login, cluster.url, email, password)
        customers.append(Customer(user_id, token))
    _, email, password = await insert_user(cluster.database_url, "staff")
    staff = {
        "authorization": f"Bearer {await asyncio.to_thread(login, cluster.url, email, password)}"
    }
    products: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        for n in range(4):
            created = await http.post(
                "/v1/products",
                headers=staff,
                json={
                    "sku": f"cluster-load-{secrets.token_hex(6)}",
                    "name": f"Cluster item {n}",
                    "category": "cluster",
                    "price": {"amount_minor": 300 + n, "currency": "EUR"},
                    "stock": STOCK,
                },
            )
            assert created.status_code == 201, created.text
            products[int(created.json()["id"])] = STOCK
    return customers, products


async def through(cluster: LocalCluster, event: Callable[[], None], *, seed: int) -> LoadRun:
    """Load the cluster through nginx, run ``event`` (in a thread) after STEADY seconds, load
    it STEADY seconds more, then retry every indeterminate order with its own key and hold
    the order history to the database."""
    customers, products = await customers_and_products(cluster)
    load = Load(cluster.url, customers, sorted(products), seed=seed)
    stop = asyncio.Event()
    opened = time.time()
    running = asyncio.create_task(load.run(stop, readers=2, probers=1))
    try:
        await asyncio.sleep(STEADY)
        began = time.time()
        await asyncio.to_thread(event)
        await asyncio.sleep(STEADY)
    finally:
        stop.set()
        await running
    closed = time.time()
    await asyncio.sleep(0.5)  # nginx has logged the last answers
    # Nothing else goes through nginx meanwhile: probes and scrapes go to the replicas.
    lines = [line for line in cluster.nginx_log() if opened <= started(line) <= closed]
    await load.resolve(cluster.url, load.history.indeterminate())
    conn = await asyncpg.connect(cluster.database_url)
    try:
        problems = await check(conn, load.history, products)
    finally:
        await conn.close()
    return LoadRun(load, lines, began, problems)
