"""Products in PostgreSQL; listings by named query per sort order; the outbox.

A listing's rows become their response Structs here, straight from the records: a page is up
to 100 rows, and building a frozen ``Product`` per row first (``record_to``), then its view,
was a fifth of a list page's Python time in the bench's profile (issue 19). So is the product
the product read loads on a cache miss (``read``). One product written, or read inside a write,
is still a ``Product``: the writes and orders use its fields."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

import asyncpg

from server.catalog.schemas import PriceView, ProductView
from server.db.database import Connection, record_to
from server.db.sqlfiles import Queries
from server.web.errors import Conflict

T = TypeVar("T")
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


@dataclass(frozen=True, slots=True)
class ProductFilter:
    q: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool = False
    category: str | None = None
    currency: str | None = None  # required by a listing by price (the query compares in one)


class Match(NamedTuple):
    """A product a search found, with its rank (a PostgreSQL real: the keyset compares it)."""

    product: ProductView
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

    async def read(
        self, conn: Connection, product_id: int, render: Callable[[ProductView, int], T]
    ) -> T | None:
        """``render(view, version)`` of the product as the API writes it, straight from its
        record (``get_product`` selects a listed row's columns); None when there is none. The
        uncached read: no ``Product`` on the way (a frozen dataclass built field by field, then
        read field by field into its view)."""
        record = await conn.fetchrow(self._get, product_id)
        return None if record is None else render(_view(record), record["version"])

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
    ) -> list[ProductView]:
        value, last_id = after if after else (None, None)
        query = self._lists[(sort, direction, where.q is not None)]
        records = await conn.fetch(query, value, last_id, where.q, *_filter_args(where, limit))
        return [_view(r) for r in records]

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
        return [Match(_view(r[:-1]), r["rank"]) for r in records]


def _view(columns: Iterable[Any]) -> ProductView:
    """A listed row as the API writes it (what ``schemas.product_view`` makes of a Product).

    By position: every listing query selects these columns in this order (a search's rank
    comes after them), and ProductView takes its fields in this order. Unpacked and passed
    positionally it costs half what reading by name and keywords did (about 10 against 21 µs
    for 50 rows, timeit); tests/catalog checks the columns and the bytes against a read."""
    (pid, sku, name, description, category, price, currency, stock, _, created, updated) = columns
    return ProductView(
        pid, sku, name, description, category, PriceView(price, currency), stock, stock > 0,
        created, updated,
    )  # fmt: skip


def _filter_args(where: ProductFilter, limit: int) -> tuple[Any, ...]:
    """$4 to $9 of every listing query (the cursor is $1/$2, the search $3)."""
    return (where.min_price, where.max_price, where.in_stock, where.category, limit, where.currency)
