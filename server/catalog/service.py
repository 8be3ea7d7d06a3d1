"""Catalog rules: reads through the cache, writes in one transaction with their audit row and
outbox event, then the cache is invalidated on every replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from server.audit.repository import AuditRepository
from server.auth.principal import Principal
from server.catalog.cache import CachedProduct, ProductCache
from server.catalog.repository import (
    Direction,
    Match,
    Product,
    ProductFields,
    ProductFilter,
    ProductsRepository,
    SortKey,
)
from server.catalog.schemas import ProductView
from server.db.database import Connection, Database
from server.db.outbox import Outbox
from server.web.context import RequestContext
from server.web.errors import Conflict, NotFound, PreconditionFailed


class InsufficientStock(Conflict):
    slug = "insufficient-stock"
    title = "Not enough stock"


class StockLimit(Conflict):
    slug = "stock-limit"
    title = "Stock beyond the limit"


def product_event(product: Product) -> dict[str, Any]:
    """A product's outbox payload (orders' stock changes use it too)."""
    return {
        "id": product.id,
        "sku": product.sku,
        "version": product.version,
        "price_minor": product.price_minor,
        "currency": product.currency,
        "stock": product.stock,
    }


class CatalogService:
    def __init__(
        self,
        db: Database,
        *,
        products: ProductsRepository,
        cache: ProductCache,
        audit: AuditRepository,
        outbox: Outbox,
    ) -> None:
        self.db = db
        self.products = products
        self.cache = cache
        self.audit = audit
        self.outbox = outbox

    def find_cached(
        self, product_id: int, render: Callable[[ProductView, int], CachedProduct]
    ) -> Awaitable[CachedProduct | None]:
        """The product as ``render(view, version)`` makes it, or None when there is none. Not a
        coroutine itself: the cache's awaitable is handed back, a frame fewer on the busiest
        read. A miss is ``Database.run`` around the repository's ``read``: two coroutines a
        miss, where there were four (a closure's, the context manager's enter and exit, the
        repository's ``get``)."""
        db, read = self.db, self.products.read
        if db.replicas is None:
            return self.cache.get(product_id, partial(db.run, read, product_id, render))
        # A miss may read a replica: the cache checks its row against the newest version.
        return self.cache.get(
            product_id,
            partial(db.run, read, product_id, render),
            lambda: db.lag_tolerant().run(read, product_id, render),
        )

    async def get(self, product_id: int) -> Product:
        async with self.db.connection() as conn:
            product = await self.products.get(conn, product_id)
        if product is None:
            raise NotFound("No such product.")
        return product

    async def page(
        self,
        *,
        sort: SortKey,
        direction: Direction,
        after: tuple[Any, int] | None,
        where: ProductFilter,
        limit: int,
        lag_tolerant: bool = False,
        reader: int | None = None,
    ) -> list[ProductView]:
        """``lag_tolerant``: a read replica may answer, one that has replayed the latest write
        of ``reader`` (a user id; None: anonymous) (server/db/replicas.py)."""
        db = await self.db.lag_tolerant_for(reader) if lag_tolerant else self.db
        async with db.connection() as conn:
            return await self.products.page(
                conn, sort=sort, direction=direction, after=after, where=where, limit=limit
            )

    async def search(
        self,
        *,
        after: tuple[float, int] | None,
        where: ProductFilter,
        limit: int,
        lag_tolerant: bool = False,
        reader: int | None = None,
    ) -> list[Match]:
        db = await self.db.lag_tolerant_for(reader) if lag_tolerant else self.db
        async with db.connection() as conn:
            return await self.products.search(conn, after=after, where=where, limit=limit)

    async def create(
        self, actor: Principal, sku: str, fields: ProductFields, stock: int, ctx: RequestContext
    ) -> Product:
        async with self.db.transaction() as conn:
            product = await self.products.create(conn, sku, fields, stock)
            await self._changed(conn, "product.created", actor, product, ctx)
        # Drops a "not found" a reader may have cached for this id a moment ago.
        await self.cache.invalidate(product.id, product.version)
        return product

    async def update(
        self,
        actor: Principal,
        product_id: int,
        versions: frozenset[int] | None,
        changes: dict[str, Any],
        ctx: RequestContext,
    ) -> Product:
        """``versions`` are the ones If-Match names; None (``*``) takes the current one."""
        async with self.db.transaction() as conn:
            current = await self.products.get(conn, product_id)
            if current is None:
                raise NotFound("No such product.")
            version = current.version
            if versions is not None and version not in versions:
                raise PreconditionFailed("The product changed since you read it.")
            fields = ProductFields(
                current.name,
                current.description,
                current.category,
                current.price_minor,
                current.currency,
            )
            updated = await self.products.update(
                conn, product_id, version, replace(fields, **changes)
            )
            if updated is None:  # a concurrent writer won between our read and our update
                raise PreconditionFailed("The product changed since you read it.")
            await self._changed(conn, "product.updated", actor, updated, ctx)
        await self.cache.invalidate(product_id, updated.version)
        return updated

    async def delete(
        self,
        actor: Principal,
        product_id: int,
        versions: frozenset[int] | None,
        ctx: RequestContext,
    ) -> None:
        async with self.db.transaction() as conn:
            current = await self.products.get(conn, product_id)
            if current is None:
                raise NotFound("No such product.")
            version = current.version
            if versions is not None and version not in versions:
                raise PreconditionFailed("The product changed since you read it.")
            if not await self.products.delete(conn, product_id, version):
                raise PreconditionFailed("The product changed since you read it.")
            gone = replace(current, version=version + 1)
            await self._changed(conn, "product.deleted", actor, gone, ctx)
        await self.cache.invalidate(product_id, version + 1)

    async def change_stock(
        self, actor: Principal, product_id: int, delta: int, reason: str, ctx: RequestContext
    ) -> Product:
        async with self.db.transaction() as conn:
            if not await self.products.exists(conn, product_id):
                raise NotFound("No such product.")
            product = await self.products.change_stock(conn, product_id, delta)
            if product is None and delta > 0:
                raise StockLimit("The change would take the stock past 2,147,483,647.")
            if product is None:
                raise InsufficientStock("The change would take the stock below zero.")
            await self._changed(
                conn, "stock.changed", actor, product, ctx, {"delta": delta, "reason": reason}
            )
        await self.cache.invalidate(product_id, product.version)
        return product

    async def _changed(
        self,
        conn: Connection,
        topic: str,
        actor: Principal,
        product: Product,
        ctx: RequestContext,
        extra: dict[str, Any] | None = None,
    ) -> None:
        payload = {**product_event(product), **(extra or {})}
        await self.outbox.add(conn, topic, "product", product.id, payload)
        await self.audit.record(
            conn,
            ctx,
            topic,
            actor_id=actor.user_id,
            target_type="product",
            target_id=str(product.id),
            details=payload,
        )
