"""The fault matrix' order checker finds each kind of disagreement between a history and the
database (orders written straight in SQL, as a broken server might have left them). Fast, and
part of `make test`: a checker that cannot fail would pass every fault run."""

from __future__ import annotations

import secrets

import asyncpg
import orjson

from tests.fixtures.order_history import Attempt, Cancel, History, Items, Outcome, check

STOCK = 20


async def new_user(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id",
            f"history-{secrets.token_hex(5)}@example.com",
        )
    )


async def new_product(db: asyncpg.Connection, stock: int) -> int:
    return int(
        await db.fetchval(
            "INSERT INTO products (sku, name, category, price_minor, currency, stock)"
            " VALUES ($1, 'History item', 'tools', 100, 'EUR', $2) RETURNING id",
            f"hist-{secrets.token_hex(6)}",
            stock,
        )
    )


async def write_order(
    db: asyncpg.Connection, user_id: int, items: Items, key: str | None, *, take_stock: bool = True
) -> int:
    """An order as the server writes one: items, stock taken, the key's stored answer."""
    order_id = int(
        await db.fetchval(
            "INSERT INTO orders (user_id, currency, total_minor)"
            " VALUES ($1, 'EUR', 0) RETURNING id",
            user_id,
        )
    )
    for product_id, quantity in items:
        await db.execute(
            "INSERT INTO order_items VALUES ($1, $2, $3, 100)", order_id, product_id, quantity
        )
        if take_stock:
            await db.execute(
                "UPDATE products SET stock = stock - $2 WHERE id = $1", product_id, quantity
            )
    if key is not None:
        await db.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, response_status,"
            " response_body, expires_at)"
            " VALUES ($1, $2, '\\x00', 201, $3, now() + interval '1 day')",
            user_id,
            key,
            orjson.dumps({"id": order_id}),
        )
    return order_id


class Scene:
    """One buyer, two products, and one acknowledged order of (2, 1) already in place."""

    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db
        self.history = History()

    async def setup(self) -> Scene:
        self.user = await new_user(self.db)
        self.products = [await new_product(self.db, STOCK), await new_product(self.db, STOCK)]
        self.items: Items = ((self.products[0], 2), (self.products[1], 1))
        order_id = await write_order(self.db, self.user, self.items, "first")
        self.attempt("first", Outcome.ACKNOWLEDGED, order_id)
        return self

    def attempt(self, key: str, outcome: Outcome, order_id: int | None = None) -> Attempt:
        status = {Outcome.ACKNOWLEDGED: 201, Outcome.FAILED: 409, Outcome.INDETERMINATE: None}
        made = Attempt(self.user, key, self.items, outcome, status[outcome], order_id)
        self.history.attempts.append(made)
        return made

    async def problems(self) -> list[str]:
        return await check(self.db, self.history, dict.fromkeys(self.products, STOCK))


async def test_a_consistent_history_passes(db: asyncpg.Connection) -> None:
    scene = await Scene(db).setup()
    # Indeterminate attempts may have committed or not.
    scene.attempt("maybe-not", Outcome.INDETERMINATE)
    committed = await write_order(db, scene.user, scene.items, "maybe-yes")
    scene.attempt("maybe-yes", Outcome.INDETERMINATE)
    # Cancelled orders give their stock back.
    await db.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", committed)
    for product_id, quantity in scene.items:
        await db.execute(
            "UPDATE products SET stock = stock + $2 WHERE id = $1", product_id, quantity
        )
    scene.history.cancels.append(Cancel(scene.user, committed, Outcome.ACKNOWLEDGED, 200))
    scene.attempt("refused", Outcome.FAILED)
    assert await scene.problems() == []


async def test_a_lost_acknowledged_order_is_found(db: asyncpg.Connection) -> None:
    scene = await Scene(db).setup()
    scene.attempt("lost", Outcome.ACKNOWLEDGED, order_id=10**12)
    assert await scene.problems() == [f"acknowledged order {10**12} (lost) is missing"]


async def test_an_order_nobody_attempted_is_found(db: asyncpg.Connection) -> None:
    scene = await Scene(db).setup()
    phantom = await write_order(db, scene.user, scene.items, "never-sent")
    no_key = await write_order(db, scene.user, scene.items, None)
    problems = await scene.problems()
    assert f"order {phantom} was never attempted (key 'never-sent')" in problems
    assert f"order {no_key} was never attempted (key None)" in problems


async def test_an_order_of_a_refused_attempt_is_found(db: asyncpg.Connection) -> None:
    scene = await Scene(db).setup()
    written = await write_order(db, scene.user, scene.items, "refused")
    scene.attempt("refused", Outcome.FAILED)
    assert f"order {written} exists but refused was refused" in await scene.problems()


async def test_a_retry_answered_with_another_order_is_found(db: asyncpg.Connection) -> None:
    scene = await Scene(db).setup()
    first = scene.history.attempts[0]
    scene.attempt("first", Outcome.ACKNOWLEDGED, order_id=(first.order_id or 0) + 1)
    problems = await scene.problems()
    assert len(problems) == 1
    assert problems[0].startswith(f"first: {first.order_id}, then answered")


async def test_stock_that_does_not_add_up_is_found(db: asyncpg.Connection) -> None:
    scene = await Scene(db).setup()
    # Sold without taking stock: an oversell.
    await write_order(db, scene.user, scene.items, "oversold", take_stock=False)
    scene.attempt("oversold", Outcome.ACKNOWLEDGED)
    scene.history.attempts[-1].order_id = await db.fetchval(
        "SELECT max(id) FROM orders WHERE user_id = $1", scene.user
    )
    first, second = scene.products
    assert await scene.problems() == [
        f"product {first}: stock {STOCK - 2} + sold 4 != initial {STOCK}",
        f"product {second}: stock {STOCK - 1} + sold 2 != initial {STOCK}",
    ]


async def test_an_acknowledged_cancel_that_did_not_happen_is_found(
    db: asyncpg.Connection,
) -> None:
    scene = await Scene(db).setup()
    order_id = scene.history.attempts[0].order_id
    assert order_id is not None
    scene.history.cancels.append(Cancel(scene.user, order_id, Outcome.ACKNOWLEDGED, 200))
    problems = await scene.problems()
    assert len(problems) == 1
    assert problems[0].startswith(f"order {order_id} was cancelled but reads")
