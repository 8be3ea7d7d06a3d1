"""ProductsRepository against the run's database: driver errors become domain errors by the
constraint that raised them."""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from server.catalog.handlers import render, render_view
from server.catalog.repository import ProductFields, ProductsRepository, SkuTaken
from server.catalog.schemas import product_view
from server.db.sqlfiles import load_queries

FIELDS = ProductFields("Lamp", "", "home", 1299, "EUR")


async def test_a_taken_sku_is_sku_taken(conn: asyncpg.Connection) -> None:
    repo = ProductsRepository(load_queries())
    sku = "sku-" + secrets.token_hex(4)
    await repo.create(conn, sku, FIELDS, 1)
    with pytest.raises(SkuTaken):
        async with conn.transaction():
            await repo.create(conn, sku, FIELDS, 1)


async def test_another_unique_violation_is_not_sku_taken(conn: asyncpg.Connection) -> None:
    # A second unique constraint, as a later migration could add one; made and dropped inside
    # the test's transaction.
    await conn.execute(
        "CREATE UNIQUE INDEX products_test_name_key ON products (name) WHERE name LIKE 'only-%'"
    )
    repo = ProductsRepository(load_queries())
    name = "only-" + secrets.token_hex(4)
    fields = ProductFields(name, "", "home", 1299, "EUR")
    await repo.create(conn, "sku-" + secrets.token_hex(4), fields, 1)
    with pytest.raises(asyncpg.UniqueViolationError) as caught:
        async with conn.transaction():
            await repo.create(conn, "sku-" + secrets.token_hex(4), fields, 1)
    assert caught.value.constraint_name == "products_test_name_key"


LISTED = (
    "id",
    "sku",
    "name",
    "description",
    "category",
    "price_minor",
    "currency",
    "stock",
    "version",
    "created_at",
    "updated_at",
)


async def test_every_listing_query_selects_the_columns_a_listed_row_is_read_by(
    conn: asyncpg.Connection,
) -> None:
    """A page's rows are unpacked by position into their views (repository._view): each
    listing query must select these columns in this order, a search's rank after them."""
    listings = [query for query in load_queries() if query.name.startswith("list_products_")]
    assert len(listings) == 13  # by created_at, price and name both ways, searched or not; rank
    for query in listings:
        statement = await conn.prepare(query.sql)
        columns = tuple(attribute.name for attribute in statement.get_attributes())
        expected = (*LISTED, "rank") if query.name == "list_products_by_relevance" else LISTED
        assert columns == expected, query.name


async def test_a_read_renders_what_the_product_renders_and_none_without_one(
    conn: asyncpg.Connection,
) -> None:
    """The uncached read (``read``) renders straight from the record: the same view, version,
    body and ETag as the ``Product`` that ``get`` builds; None for an id without a live
    product (never made, or deleted)."""
    repo = ProductsRepository(load_queries())
    created = await repo.create(conn, "sku-" + secrets.token_hex(4), FIELDS, 3)
    product = await repo.get(conn, created.id)
    assert product is not None
    read = await repo.read(conn, created.id, lambda view, version: (view, version))
    assert read == (product_view(product), product.version)
    assert await repo.read(conn, created.id, render_view) == render(product)
    assert await repo.delete(conn, created.id, product.version)
    assert await repo.read(conn, created.id, render_view) is None
    assert await repo.read(conn, 2**62, render_view) is None
