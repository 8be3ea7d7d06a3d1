"""Products in PostgreSQL; listings by named query per sort order; the outbox."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from server.db.database import Connection, record_to
from server.db.sqlfiles import Queries
from server.web.errors import Conflict

SortKey = Literal["created_at", "price", "name"]
Direction = Literal["asc", "desc"]
_QUERY_SORT = {"created_at": "created", "price": "price", "name": "name"}


class SkuTaken(Conflict):
    slug = "sku-taken"
    title = "SKU already used"


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    sku: str
    name: str
    description: str
    category: str
    price_minor: int
    currency: str
    stock: int
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    def sort_value(self, key: SortKey) -> Any:
        return {"created_at": self.created_at, "price": self.price_minor, "name": self.name}[key]


@dataclass(frozen=True, slots=True)
class ProductFilter:
    q: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool = False
    category: str | None = None
    currency: str | None = None  # required by a listing by price (the query compares in one)


@dataclass(frozen=True, slots=True)
class Match:
    """A product a search found, with its rank (a PostgreSQL real: the keyset compares it)."""

    product: Product
    rank: float


@dataclass(frozen=True, slots=True)
class ProductFields:
    name: str
    description: str
    category: str
    price_minor: int
    currency: str


class ProductsRepository:
    def __init__(self, queries: Queries) -> None:
        q = queries.sql
        self._get = q("get_product")
        self._create = q("create_product")
        self._update = q("update_product")
        self._delete = q("delete_product")
        self._stock = q("update_product_stock")
        self._exists = q("exists_product")
        self._stock_of = q("list_product_stock")
        # (sort, direction, searching): a search has queries of its own (sql/products_list.sql).
        self._lists = {
            (key, direction, searching): q(
                f"list_products_{'matching_' if searching else ''}by_{name}_{direction}"
            )
            for key, name in _QUERY_SORT.items()
            for direction in ("asc", "desc")
            for searching in (False, True)
        }
        self._relevance = q("list_products_by_relevance")

    async def get(self, conn: Connection, product_id: int) -> Product | None:
        record = await conn.fetchrow(self._get, product_id)
        return None if record is None else record_to(Product, record)

    async def exists(self, conn: Connection, product_id: int) -> bool:
        return bool(await conn.fetchval(self._exists, product_id))

    async def stock_of(self, conn: Connection, product_ids: list[int]) -> dict[int, int]:
        """The stock of each live product among ``product_ids``; an id missing from the
        answer names no product (never made, or deleted)."""
        records = await conn.fetch(self._stock_of, product_ids)
        return {record["id"]: record["stock"] for record in records}

    async def create(
        self, conn: Connection, sku: str, fields: ProductFields, stock: int
    ) -> Product:
        try:
            record = await conn.fetchrow(
                self._create,
                sku,
                fields.name,
                fields.description,
                fields.category,
                fields.price_minor,
                fields.currency,
                stock,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "products_sku_key":
                raise SkuTaken(f"A product with SKU {sku!r} exists.") from None
            raise
        assert record is not None
        return record_to(Product, record)

    async def update(
        self, conn: Connection, product_id: int, version: int, fields: ProductFields
    ) -> Product | None:
        """None when the version is not the current one (or the product is gone)."""
        record = await conn.fetchrow(
            self._update,
            product_id,
            version,
            fields.name,
            fields.description,
            fields.category,
            fields.price_minor,
            fields.currency,
        )
        return None if record is None else record_to(Product, record)

    async def delete(self, conn: Connection, product_id: int, version: int) -> bool:
        return await conn.fetchval(self._delete, product_id, version) is not None

    async def change_stock(self, conn: Connection, product_id: int, delta: int) -> Product | None:
        """None when the change would take stock below zero (or the product is gone)."""
        record = await conn.fetchrow(self._stock, product_id, delta)
        return None if record is None else record_to(Product, record)

    async def page(
        self,
        conn: Connection,
        *,
        sort: SortKey,
        direction: Direction,
        after: tuple[Any, int] | None,
        where: ProductFilter,
        limit: int,
    ) -> list[Product]:
        value, last_id = after if after else (None, None)
        query = self._lists[(sort, direction, where.q is not None)]
        records = await conn.fetch(query, value, last_id, where.q, *_filter_args(where, limit))
        return [record_to(Product, r) for r in records]

    async def search(
        self,
        conn: Connection,
        *,
        after: tuple[float, int] | None,
        where: ProductFilter,
        limit: int,
    ) -> list[Match]:
        """Best match of ``where.q`` first (required); ``after`` is the last (rank, id) seen."""
        rank, last_id = after if after else (None, None)
        args = _filter_args(where, limit)
        records = await conn.fetch(self._relevance, rank, last_id, where.q, *args)
        return [Match(record_to(Product, r), r["rank"]) for r in records]


def _filter_args(where: ProductFilter, limit: int) -> tuple[Any, ...]:
    """$4 to $9 of every listing query (the cursor is $1/$2, the search $3)."""
    return (where.min_price, where.max_price, where.in_stock, where.category, limit, where.currency)
