"""Shapes of the catalog endpoints."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from server.catalog.currencies import ISO_4217
from server.web.schemas import DEFAULT_LIMIT, PageLimit, Strict

if TYPE_CHECKING:  # the repository builds listed rows' views from here: no import cycle
    from server.catalog.repository import Product

Money = Annotated[int, msgspec.Meta(ge=0, le=10**15)]
Currency = ISO_4217
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]
Description = Annotated[str, msgspec.Meta(max_length=5000)]


class Price(Strict):
    amount_minor: Money
    currency: Currency


class NewProductBody(Strict):
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    name: Name
    category: Category
    price: Price
    description: Description = ""
    stock: Annotated[int, msgspec.Meta(ge=0, le=10**9)] = 0


class ProductPatch(Strict):
    name: Name | None = None
    description: Description | None = None
    category: Category | None = None
    price: Price | None = None


class StockBody(Strict):
    delta: Annotated[
        int, msgspec.Meta(ge=-(10**9), le=10**9, extra_json_schema={"not": {"const": 0}})
    ]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

    def __post_init__(self) -> None:
        # A change of nothing would still bump the version, audit and publish an event.
        if self.delta == 0:
            raise ValueError("invalid field `delta`: must not be 0")


class ProductQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None
    q: Annotated[
        Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None,
        msgspec.Meta(
            description="Search: every word must begin a word of the name, the SKU or the "
            "description, stemmed (`ket` and `kettles` find a kettle). Sorts by `relevance` "
            "unless `sort` says otherwise."
        ),
    ] = None
    currency: Annotated[
        Currency | None,
        msgspec.Meta(
            description="Only prices in this currency. Required with `min_price`, `max_price` "
            "or `sort=price`: prices in different currencies do not compare."
        ),
    ] = None
    min_price: Money | None = None
    max_price: Money | None = None
    in_stock: bool = False
    category: Category | None = None
    sort: Annotated[
        Literal["created_at", "price", "name", "relevance"] | None,
        msgspec.Meta(
            description="`relevance` (best match first; the default with `q`, and only with "
            "it) or `created_at` (the default without `q`), `price`, `name`."
        ),
    ] = None
    order: Annotated[
        Literal["asc", "desc"] | None,
        msgspec.Meta(description="`asc` by default; `relevance` lists the best match first only."),
    ] = None


class PriceView(msgspec.Struct):
    amount_minor: int
    currency: str


class ProductView(msgspec.Struct):
    id: int
    sku: str
    name: str
    description: str
    category: str
    price: PriceView
    stock: int
    in_stock: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class ProductList(msgspec.Struct):
    data: list[ProductView]
    next_cursor: str | None


def product_view(product: Product) -> ProductView:
    return ProductView(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description,
        category=product.category,
        price=PriceView(product.price_minor, product.currency),
        stock=product.stock,
        in_stock=product.stock > 0,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )
