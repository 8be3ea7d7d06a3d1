"""Orders, their items and idempotency keys in PostgreSQL.

The values handed out are NamedTuples: immutable as frozen dataclasses are, and built by one
``tuple.__new__``, where a frozen dataclass's ``__init__`` calls ``object.__setattr__`` once
per field (placing an order builds an ``Order`` and an ``OrderItem`` per product: issue 19)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from server.db.database import Connection
from server.db.sqlfiles import Queries


class OrderItem(NamedTuple):
    product_id: int
    quantity: int
    unit_price_minor: int


class Order(NamedTuple):
    id: int
    user_id: int
    status: str
    currency: str
    total_minor: int
    created_at: dt.datetime
    updated_at: dt.datetime
    items: tuple[OrderItem, ...] = ()


class StoredResponse(NamedTuple):
    request_hash: bytes
    status: int
    body: bytes


def _order(record: asyncpg.Record, items: tuple[OrderItem, ...] = ()) -> Order:
    return Order(
        record["id"],
        record["user_id"],
        record["status"],
        record["currency"],
        record["total_minor"],
        record["created_at"],
        record["updated_at"],
        items,
    )


class OrdersRepository:
    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._lock = q("get_idempotency_lock")
        self._get_key = q("get_idempotency_key")
        self._get_key_and_buyer = q("get_idempotency_key_and_buyer")
        self._create_key = q("create_idempotency_key_and_events")
        self._expire_keys = q("delete_expired_idempotency_keys")
        self._create = q("create_order")
        self._get = q("get_order")
        self._lock_order = q("get_order_for_update")
        self._items = q("list_order_items")
        self._status = q("update_order_status")
        self._list = q("list_orders")

    async def try_lock_key(self, conn: Connection, user_id: int, key: str) -> bool:
        """Held until the transaction ends; False while another request holds it."""
        return bool(await conn.fetchval(self._lock, user_id, key))

    async def stored_response(
        self, conn: Connection, user_id: int, key: str, *, check_email: bool = False
    ) -> tuple[StoredResponse | None, bool]:
        """The answer stored under the key (None: none), and whether the buyer may order:
        with ``check_email``, when nothing is stored, whether their address is verified (read
        in the same statement); True otherwise."""
        if check_email:
            record = await conn.fetchrow(self._get_key_and_buyer, user_id, key)
            assert record is not None  # one row, whatever is stored
            if record["response_status"] is None:
                return None, bool(record["email_verified"])
        else:
            record = await conn.fetchrow(self._get_key, user_id, key)
            if record is None:
                return None, True
        stored = StoredResponse(
            record["request_hash"], record["response_status"], record["response_body"]
        )
        return stored, True

    async def store_response(
        self,
        conn: Connection,
        user_id: int,
        key: str,
        request_hash: bytes,
        response: tuple[int, bytes],
        expires_at: dt.datetime,
        events: tuple[object, ...],
    ) -> None:
        """The answer under the key, and in the same statement the outbox events whose
        ``Outbox.arguments`` are ``events`` (one round trip for both)."""
        status, body = response
        await conn.execute(
            self._create_key, user_id, key, request_hash, status, body, expires_at, *events
        )

    async def forget_expired_keys(self, conn: Connection) -> int:
        status = await conn.execute(self._expire_keys)
        return int(status.rpartition(" ")[2])

    async def create(
        self, conn: Connection, user_id: int, currency: str, items: Sequence[OrderItem]
    ) -> Order:
        total = sum(item.quantity * item.unit_price_minor for item in items)
        record = await conn.fetchrow(
            self._create,
            user_id,
            currency,
            total,
            [i.product_id for i in items],
            [i.quantity for i in items],
            [i.unit_price_minor for i in items],
        )
        assert record is not None
        return _order(record, tuple(items))

    async def get(self, conn: Connection, order_id: int, *, lock: bool = False) -> Order | None:
        record = await conn.fetchrow(self._lock_order if lock else self._get, order_id)
        if record is None:
            return None
        return (await self._with_items(conn, [record]))[0]

    async def set_status(
        self, conn: Connection, order_id: int, new: str, expected: str
    ) -> Order | None:
        record = await conn.fetchrow(self._status, order_id, new, expected)
        return None if record is None else (await self._with_items(conn, [record]))[0]

    async def page(
        self,
        conn: Connection,
        *,
        owner: int | None,
        status: str | None,
        before: tuple[dt.datetime, int] | None,
        limit: int,
    ) -> list[Order]:
        created, last_id = before if before else (None, None)
        records = await conn.fetch(self._list, owner, status, created, last_id, limit)
        return await self._with_items(conn, records)

    async def _with_items(self, conn: Connection, records: list[asyncpg.Record]) -> list[Order]:
        ids = [r["id"] for r in records]
        grouped: dict[int, list[OrderItem]] = {i: [] for i in ids}
        for item in await conn.fetch(self._items, ids):
            grouped[item["order_id"]].append(
                OrderItem(item["product_id"], item["quantity"], item["unit_price_minor"])
            )
        return [_order(r, tuple(grouped[r["id"]])) for r in records]
