"""Placing orders (idempotent, all-or-nothing stock), reading them, and their state machine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from server.auth.principal import Principal
from server.catalog.cache import ProductCache
from server.catalog.repository import Product, ProductsRepository
from server.catalog.service import product_event
from server.db.database import Connection, Database
from server.db.outbox import Event, Outbox
from server.orders.repository import Order, OrderItem, OrdersRepository
from server.web.errors import AppError, Conflict, Forbidden, NotFound, ValidationFailed

READ_ALL = "orders:read_all"
WRITE_ALL = "orders:write_all"
# Status moves the state machine allows: anything else is a 409.
TRANSITIONS = {("placed", "fulfilled"), ("placed", "cancelled")}
# orders.total_minor is a bigint: prices up to 10^15 times quantities up to 10,000 can pass it.
MAX_TOTAL_MINOR = 2**63 - 1


class IdempotencyInFlight(Conflict):
    slug = "idempotency-in-flight"
    title = "A request with this Idempotency-Key is still running"


class IdempotencyMismatch(AppError):
    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with another body"


class OrderTotalTooLarge(ValidationFailed):
    slug = "order-total-too-large"
    title = "The order's total is too large"


class OutOfStock(Conflict):
    slug = "out-of-stock"
    title = "Not enough stock"


class UnknownProduct(ValidationFailed):
    slug = "unknown-product"
    title = "No such product"


class EmailNotVerified(Forbidden):
    slug = "email-not-verified"
    title = "Email address not verified"


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "The order cannot move to that status"


class OrdersService:
    def __init__(
        self,
        db: Database,
        *,
        orders: OrdersRepository,
        products: ProductsRepository,
        cache: ProductCache,
        outbox: Outbox,
        key_ttl: dt.timedelta = dt.timedelta(hours=24),
        need_verified_email: bool = False,
    ) -> None:
        self.db = db
        self.orders = orders
        self.products = products
        self.cache = cache
        self.outbox = outbox
        self.key_ttl = key_ttl
        self.need_verified_email = need_verified_email

    async def place(
        self,
        buyer: Principal,
        key: str,
        request_hash: bytes,
        lines: list[tuple[int, int]],
        render: Callable[[Order], bytes],
    ) -> tuple[int, bytes]:
        """(status, body) of the answer: a new order, or the first answer replayed byte for byte.

        The key's lock is taken first and held to the end of the transaction, so a retry of a
        request still running gets a 409; the stored answer commits with the order itself.
        """
        quantities: dict[int, int] = {}
        for product_id, quantity in lines:
            quantities[product_id] = quantities.get(product_id, 0) + quantity
        async with self.db.transaction() as conn:
            if not await self.orders.try_lock_key(conn, buyer.user_id, key):
                raise IdempotencyInFlight("The first request with this key is still running.")
            # With the buyer's address check when it applies: one round trip for both reads.
            stored, verified = await self.orders.stored_response(
                conn, buyer.user_id, key, check_email=self.need_verified_email
            )
            if stored is not None:
                if stored.request_hash != request_hash:
                    raise IdempotencyMismatch("This Idempotency-Key was used for another body.")
                return stored.status, stored.body
            # After the replay: an order placed before stays answerable under its key.
            if not verified:
                raise EmailNotVerified(
                    "Placing an order needs a verified email address: follow the link mailed "
                    "at sign-up, or POST /v1/auth/email/verify/resend for a new one."
                )
            taken = await self._take_stock(conn, quantities, lines)
            currencies = {product.currency for product in taken}
            if len(currencies) > 1:
                raise ValidationFailed(
                    "All items of an order must share one currency.",
                    errors=[{"pointer": "/items", "detail": ", ".join(sorted(currencies))}],
                )
            items = [OrderItem(p.id, quantities[p.id], p.price_minor) for p in taken]
            total = sum(item.quantity * item.unit_price_minor for item in items)
            if total > MAX_TOTAL_MINOR:
                # Raised inside the transaction: the stock just taken goes back, no key is kept.
                raise OrderTotalTooLarge(
                    "Split the order: its total is more than one order can hold.",
                    errors=[
                        {
                            "pointer": "/items",
                            "detail": f"total {total} exceeds {MAX_TOTAL_MINOR} minor units",
                        }
                    ],
                )
            order = await self.orders.create(conn, buyer.user_id, currencies.pop(), items)
            body = render(order)
            events = [
                Event("order.placed", "order", order.id, _event(order)),
                *_stock_changed(order.id, "order.placed", taken, quantities, -1),
            ]
            expires = dt.datetime.now(dt.UTC) + self.key_ttl
            # The stored answer, the order's event and its stock changes: one statement.
            await self.orders.store_response(
                conn,
                buyer.user_id,
                key,
                request_hash,
                (201, body),
                expires,
                self.outbox.arguments(events),
            )
        await self._refresh(taken)
        return 201, body

    async def housekeeping(self) -> None:
        """Forget idempotency keys past their lifetime (kept at least 24 h)."""
        async with self.db.connection() as conn:
            await self.orders.forget_expired_keys(conn)

    async def _take_stock(
        self, conn: Connection, quantities: dict[int, int], lines: list[tuple[int, int]]
    ) -> list[Product]:
        taken, missing = [], []
        # Ascending ids: two orders for the same products lock rows in the same order.
        for product_id in sorted(quantities):
            product = await self.products.change_stock(conn, product_id, -quantities[product_id])
            if product is None:
                missing.append(product_id)
            else:
                taken.append(product)
        if missing:
            # Raising rolls back what was taken. The products in `missing` were not touched
            # by this transaction, so their stock read now is what a retry could have.
            await self._refuse(conn, missing, quantities, lines)
        return taken

    async def _refuse(
        self,
        conn: Connection,
        missing: list[int],
        quantities: dict[int, int],
        lines: list[tuple[int, int]],
    ) -> None:
        """Why the products in ``missing`` could not be taken: a product that does not exist
        is the request's fault (422, pointing at its item); short stock is the catalog's state
        (409, with what each item could have)."""
        stock = await self.products.stock_of(conn, missing)
        unknown = [pid for pid in missing if pid not in stock]
        if unknown:
            raise UnknownProduct(
                f"No product has the id {', '.join(map(str, unknown))}.",
                errors=[
                    {"pointer": f"/items/{index}/product_id", "detail": f"no product {pid}"}
                    for pid in unknown
                    # Every item of the body that names it: found only when refusing.
                    for index, (line_pid, _) in enumerate(lines)
                    if line_pid == pid
                ],
            )
        raise OutOfStock(
            "Some items are not available in the quantity asked for: `items` says how many "
            "of each are.",
            extra={
                "items": [
                    {"product_id": pid, "requested": quantities[pid], "available": stock[pid]}
                    for pid in missing
                ]
            },
        )

    async def _refresh(self, products: list[Product]) -> None:
        # Every product of the order at once: one Redis round trip, not two per product.
        await self.cache.invalidate_many([(product.id, product.version) for product in products])

    async def get(self, viewer: Principal, order_id: int) -> Order:
        async with self.db.connection() as conn:
            order = await self.orders.get(conn, order_id)
        if order is None or not (order.user_id == viewer.user_id or viewer.can(READ_ALL)):
            raise NotFound("No such order.")  # someone else's order does not exist for you
        return order

    async def page(
        self,
        viewer: Principal,
        *,
        user_id: int | None,
        status: str | None,
        before: tuple[dt.datetime, int] | None,
        limit: int,
    ) -> list[Order]:
        if viewer.can(READ_ALL):
            owner = user_id
        elif user_id is not None and user_id != viewer.user_id:
            raise Forbidden(f"Other people's orders need {READ_ALL}.")
        else:
            owner = viewer.user_id
        async with self.db.connection() as conn:
            return await self.orders.page(
                conn, owner=owner, status=status, before=before, limit=limit
            )

    async def cancel(self, viewer: Principal, order_id: int) -> Order:
        return await self._move(viewer, order_id, "cancelled", owner_may=True)

    async def fulfil(self, viewer: Principal, order_id: int) -> Order:
        return await self._move(viewer, order_id, "fulfilled", owner_may=False)

    async def _move(self, viewer: Principal, order_id: int, new: str, *, owner_may: bool) -> Order:
        restocked: list[Product] = []
        events: list[Event] = []
        async with self.db.transaction() as conn:
            order = await self.orders.get(conn, order_id, lock=True)
            mine = order is not None and order.user_id == viewer.user_id
            if order is None or not (mine or viewer.can(READ_ALL) or viewer.can(WRITE_ALL)):
                raise NotFound("No such order.")
            if not ((owner_may and mine) or viewer.can(WRITE_ALL)):
                raise Forbidden(f"This needs {WRITE_ALL}.")
            if (order.status, new) not in TRANSITIONS:
                raise InvalidTransition(f"An order that is {order.status} cannot become {new}.")
            moved = await self.orders.set_status(conn, order_id, new, order.status)
            assert moved is not None  # the row is locked: its status cannot have changed
            if new == "cancelled":
                returned: dict[int, int] = {}
                for item in order.items:
                    returned[item.product_id] = returned.get(item.product_id, 0) + item.quantity
                # Ascending ids, as placing takes them: no deadlock with a concurrent order.
                for product_id in sorted(returned):
                    product = await self.products.change_stock(
                        conn, product_id, returned[product_id]
                    )
                    # A product deleted since has no stock to return to: nothing to restock.
                    if product is not None:
                        restocked.append(product)
                events = _stock_changed(order_id, "order.cancelled", restocked, returned, 1)
            events.append(Event(f"order.{new}", "order", order_id, _event(moved)))
            await self.outbox.add_all(conn, events)
        await self._refresh(restocked)
        return moved


def _stock_changed(
    order_id: int, reason: str, products: list[Product], quantities: dict[int, int], sign: int
) -> list[Event]:
    """One ``stock.changed`` event per product an order took stock from or gave it back to, as
    the catalog's own stock changes write them (plus the order's id)."""
    events = []
    for product in products:
        payload = product_event(product)  # a fresh dict: completed in place, not copied
        payload["delta"] = sign * quantities[product.id]
        payload["reason"] = reason
        payload["order_id"] = order_id
        events.append(Event("stock.changed", "product", product.id, payload))
    return events


def _event(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "status": order.status,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "items": [
            {
                "product_id": i.product_id,
                "quantity": i.quantity,
                "unit_price_minor": i.unit_price_minor,
            }
            for i in order.items
        ],
    }
