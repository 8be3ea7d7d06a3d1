"""What placing an order sends to PostgreSQL and Redis, statement by statement: the order's
CPU is mostly round trips (issue 19), so one more is a regression this test names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx
import pytest
from asyncpg.transaction import Transaction

from server.app import HotpathApp
from server.db.connection import PooledConnection
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings
from server.users.repository import UsersRepository
from server.web.state import app_container
from tests.fixtures.identity import Accounts
from tests.fixtures.orders import new_product, order

# The transaction of a new order of two products, in the order it runs.
PLACE = [
    "BEGIN",
    "get_idempotency_lock",
    "get_idempotency_key_and_buyer",  # the stored answer and the buyer's address, together
    "update_product_stock",
    "update_product_stock",
    "create_order",  # and its items
    # The stored answer, order.placed and stock.changed (one row per product) together.
    "create_idempotency_key_and_events",
    "COMMIT",
]
REPLAY = ["BEGIN", "get_idempotency_lock", "get_idempotency_key_and_buyer", "COMMIT"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # As in production: the buyer's address is checked (it is off in HOTPATH_ENV=test).
    return dataclasses.replace(settings, orders_need_verified_email=True)


_RECORDING: ContextVar[bool] = ContextVar("recording", default=False)


class Sent:
    """Statements and Redis commands sent while ``recording``, by the requests made there
    (their tasks copy its context): the app's background work is not counted."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.redis: list[tuple[str, ...]] = []

    def ours(self) -> bool:
        return _RECORDING.get()

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.statements.clear()
        self.redis.clear()
        token = _RECORDING.set(True)
        try:
            yield
        finally:
            _RECORDING.reset(token)


@pytest.fixture
def sent(app: HotpathApp, monkeypatch: pytest.MonkeyPatch) -> Sent:
    found = Sent()
    names = {query.sql: query.name for query in load_queries()}

    def spy(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: PooledConnection, query: str, *args: object) -> Any:
            if found.ours():
                found.statements.append(names.get(query, query))
            return method(self, query, *args)

        return wrapper

    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
        monkeypatch.setattr(PooledConnection, name, spy(getattr(PooledConnection, name)))

    def bracket(word: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(self: Transaction) -> None:
            if found.ours():
                found.statements.append(word)
            await method(self)

        return wrapper

    monkeypatch.setattr(Transaction, "start", bracket("BEGIN", Transaction.start))
    monkeypatch.setattr(Transaction, "commit", bracket("COMMIT", Transaction.commit))
    monkeypatch.setattr(Transaction, "rollback", bracket("ROLLBACK", Transaction.rollback))
    return found


def spy_redis(app: HotpathApp, sent: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    client = app_container(app).redis.client
    assert client is not None, "these tests need the shared Redis"
    original = client.create_request

    def spy(name: bytes, *args: object, **kwargs: object) -> object:
        if sent.ours():
            sent.redis.append((name.decode(), *map(str, args)))
        return original(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "create_request", spy)
    # On one server the tombstones go on the link's own command connection (decision 0015).
    commands = app_container(app).redis.commands
    if commands is not None:
        execute = commands.execute

        async def spy_ours(*args: str | bytes) -> object:
            if sent.ours():
                sent.redis.append(tuple(a.decode() if isinstance(a, bytes) else a for a in args))
            return await execute(*args)

        monkeypatch.setattr(commands, "execute", spy_ours)


async def test_an_order_is_one_transaction_and_one_redis_call(
    http: httpx.AsyncClient,
    app: HotpathApp,
    accounts: Accounts,
    sent: Sent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, staff = await accounts.create_and_login("staff")
    buyer_account, buyer = await accounts.create_and_login("customer")
    async with app_container(app).db.transaction() as conn:
        await UsersRepository(load_queries()).mark_email_verified(conn, buyer_account.id)
    first = await new_product(http, staff, stock=10)
    second = await new_product(http, staff, stock=10)
    items = [{"product_id": second, "quantity": 1}, {"product_id": first, "quantity": 2}]
    # A first order loads the scripts into Redis and prepares the statements.
    assert (await order(http, buyer, "warm-up", items)).status_code == 201
    spy_redis(app, sent, monkeypatch)

    with sent.recording():
        placed = await order(http, buyer, "counted", items)
    assert placed.status_code == 201, placed.text
    assert sent.statements == PLACE
    # Both products' tombstones and invalidations in one script call (one Redis server).
    assert [command[0] for command in sent.redis] == ["EVAL"], sent.redis

    with sent.recording():
        replay = await order(http, buyer, "counted", items)
    assert (replay.status_code, replay.content) == (201, placed.content)
    assert sent.statements == REPLAY
    assert sent.redis == []  # a replay changes nothing: nothing to invalidate

    # What the calls did: each product's tombstone carries its new version.
    redis = app_container(app).redis.client
    assert redis is not None
    namespace = app_container(app).catalog.cache.namespace
    versions = {}
    for product in (first, second):
        row = (await http.get(f"/v1/products/{product}")).json()
        stored = await redis.get(f"{namespace}:product:{product}")
        assert stored is not None
        versions[product] = int(stored.partition("\n")[0])
        assert row["stock"] == {first: 6, second: 8}[product]
    async with app_container(app).db.connection() as conn:
        rows = await conn.fetch(
            "SELECT id, version FROM products WHERE id = ANY($1)", [first, second]
        )
        current = {row["id"]: row["version"] for row in rows}
    assert versions == current
