"""HTTP in/out for the catalog."""

from __future__ import annotations

from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.catalog import schemas
from server.catalog.cache import CachedProduct
from server.catalog.listing import after, listing_of, position
from server.catalog.repository import Product, ProductFields, SortKey
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.asgi_endpoint import asgi_endpoint, body_message, empty_start, json_start
from server.web.conditional import etag, not_modified, required_versions
from server.web.context import request_context
from server.web.errors import NotFound
from server.web.pagination import MAX_LIMIT, paged_response
from server.web.responses import (
    dumps,
    path_id,
    read_json,
    read_query,
    scope_header,
    scope_path_id,
)
from server.web.state import container, scope_container

# A public resource: shared caches may keep it briefly; revalidation is cheap (ETag -> 304).
_PUBLIC = "public, max-age=5, stale-while-revalidate=30"
_PUBLIC_HEADER = (b"cache-control", _PUBLIC.encode())
_NO_PRODUCT = "No such product."


def render(product: Product) -> CachedProduct:
    return render_view(schemas.product_view(product), product.version)


def render_view(view: schemas.ProductView, version: int) -> CachedProduct:
    """A product's body and ETag, what the cache keeps (a read's miss renders with this)."""
    return CachedProduct(version, etag("p", view.id, version), dumps(view))


def _product_response(product: Product, status: int = 200) -> Response:
    cached = render(product)
    return Response(
        cached.body,
        status_code=status,
        media_type="application/json",
        headers={"etag": cached.etag, "location": f"/v1/products/{product.id}"},
    )


@api(
    summary="One product",
    description="Served from a cache; strong ETag, `If-None-Match` answers 304.",
    tags=("catalog",),
    responses={200: schemas.ProductView, 304: None},
    errors=(404,),
)
@asgi_endpoint
async def get_product(scope: Scope, receive: Receive, send: Send) -> None:
    # Raw ASGI (server/web/asgi_endpoint.py): the busiest read, with no Request, Response or
    # wrapper coroutine between the router and the cache's bytes. Errors still go up to the
    # error boundary, so a 404 is the same problem+json.
    catalog = scope_container(scope).catalog
    cached = await catalog.find_cached(scope_path_id(scope, "product_id", _NO_PRODUCT), render_view)
    if cached is None:
        raise NotFound(_NO_PRODUCT)
    tag = cached.etag.encode()
    if not_modified(scope_header(scope, b"if-none-match"), cached.etag):
        # What Response(status_code=304, headers=...) sends: no content-type or -length.
        await send(empty_start(304, ((b"etag", tag), _PUBLIC_HEADER)))
        await send(body_message())
        return
    await send(json_start(cached.body, ((b"etag", tag), _PUBLIC_HEADER)))
    await send(body_message(cached.body))


@api(
    summary="List products",
    description=f"Keyset pagination (`limit` ≤ {MAX_LIMIT}, `cursor`). Filters: `q` (search "
    "over name, SKU and description: every word a prefix of a stemmed word, so `ket`, "
    "`kettles` and a SKU find a kettle), `currency`, `min_price` and `max_price` (minor "
    "units; they need `currency`), `in_stock`, `category`. `sort`: `relevance` (best match "
    "first; the default with `q`), `created_at` (the default without `q`), `price` (needs "
    "`currency`: prices in different currencies do not compare) or `name`; `order` `asc` "
    "(default) or `desc`. A 400 `invalid-parameter` for `min_price` > `max_price`, a price "
    "filter or sort without `currency`, `sort=relevance` without `q`; `unknown-parameter` for "
    "a parameter the list does not take. Both carry `errors` with a pointer to the "
    "parameter; a value outside an enumeration names the values allowed.",
    tags=("catalog",),
    query=schemas.ProductQuery,
    responses={200: schemas.ProductList},
    errors=(400,),
)
async def list_products(request: Request) -> Response:
    listing = listing_of(read_query(request, schemas.ProductQuery))
    services = container(request)
    limit = listing.query.limit
    # A read replica may answer: for a signed-in caller, one that has replayed their latest
    # write (server/db/replicas.py), so whoever just wrote a product lists it.
    principal = request.scope.get("principal")
    reader = None if principal is None else principal.user_id
    if listing.sort == "relevance":
        matches = await services.catalog.search(
            after=after(listing, services.cursors),
            where=listing.where,
            limit=limit + 1,
            lag_tolerant=True,
            reader=reader,
        )
        return paged_response(
            request,
            matches,
            limit=limit,
            cursors=services.cursors,
            scope=listing.scope,
            position=lambda m: (m.rank, m.product.id),
            view=lambda m: m.product,
        )
    rows = await services.catalog.page(
        sort=cast(SortKey, listing.sort),
        direction=listing.direction,
        after=after(listing, services.cursors),
        where=listing.where,
        limit=limit + 1,
        lag_tolerant=True,
        reader=reader,
    )
    return paged_response(
        request,
        rows,
        limit=limit,
        cursors=services.cursors,
        scope=listing.scope,
        position=position(listing),
    )


@api(
    summary="Create a product",
    tags=("catalog",),
    body=schemas.NewProductBody,
    responses={201: schemas.ProductView},
    errors=(400, 409, 422),
)
async def create_product(request: Request) -> Response:
    body = await read_json(request, schemas.NewProductBody)
    fields = ProductFields(
        body.name, body.description, body.category, body.price.amount_minor, body.price.currency
    )
    product = await container(request).catalog.create(
        principal_of(request), body.sku, fields, body.stock, request_context(request)
    )
    return _product_response(product, 201)


@api(
    summary="Change a product",
    description="Needs `If-Match` with the current ETag: 428 without it, 412 when stale.",
    tags=("catalog",),
    body=schemas.ProductPatch,
    responses={200: schemas.ProductView},
    errors=(400, 404, 412, 422, 428),
)
async def patch_product(request: Request) -> Response:
    product_id = path_id(request, "product_id", _NO_PRODUCT)
    versions = required_versions(request.headers.get("if-match"), "p", product_id)
    body = await read_json(request, schemas.ProductPatch)
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("name", "description", "category")
        if getattr(body, name) is not None
    }
    if body.price is not None:
        changes |= {"price_minor": body.price.amount_minor, "currency": body.price.currency}
    product = await container(request).catalog.update(
        principal_of(request), product_id, versions, changes, request_context(request)
    )
    return _product_response(product)


@api(
    summary="Delete a product (soft)",
    description="Needs `If-Match` with the current ETag: 428 without it, 412 when stale.",
    tags=("catalog",),
    responses={204: None},
    errors=(404, 412, 428),
)
async def delete_product(request: Request) -> Response:
    product_id = path_id(request, "product_id", _NO_PRODUCT)
    versions = required_versions(request.headers.get("if-match"), "p", product_id)
    await container(request).catalog.delete(
        principal_of(request), product_id, versions, request_context(request)
    )
    return Response(status_code=204)


@api(
    summary="Change a product's stock",
    description="`delta` may be negative, not 0; stock never goes below zero (409).",
    tags=("catalog",),
    body=schemas.StockBody,
    responses={200: schemas.ProductView},
    errors=(400, 404, 409, 422),
)
async def change_stock(request: Request) -> Response:
    body = await read_json(request, schemas.StockBody)
    product = await container(request).catalog.change_stock(
        principal_of(request),
        path_id(request, "product_id", _NO_PRODUCT),
        body.delta,
        body.reason,
        request_context(request),
    )
    return _product_response(product)
