"""What our JSON costs: encoding a product and a 50-product page, decoding the create bodies.

Everything goes through the handlers' own code: ``render`` (the body the product cache keeps),
``paged_response`` (the list endpoint's answer, with its signed cursor and Link header) and
``decode_json`` (what ``read_json`` runs on the body: msgspec decodes and validates in one pass).
The stdlib ``json.dumps`` of the same page, called as Starlette's own ``JSONResponse`` calls it,
is the reference that shows what orjson buys. The products are the demo catalog's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import msgspec
import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.requests import Request

from server.catalog import schemas as catalog
from server.catalog.handlers import render
from server.catalog.repository import Product
from server.catalog.seed import _rows
from server.orders import schemas as orders
from server.web import errors
from server.web.pagination import CursorCodec, paged_response
from server.web.responses import decode_json, dumps

PAGE = 50
ORDER_LINES = 5
PAIR_ROUNDS = 40
ENCODES_PER_SAMPLE = 20
DemoRow = tuple[str, str, str, str, int, str, int]  # the seed's COLUMNS
EPOCH = dt.datetime(2025, 3, 14, 9, 26, 53, 589_793, tzinfo=dt.UTC)
# What the list handler's _scope gives for the default query (sort by created_at, no filters).
SCOPE = 'products:["created_at","asc",null,null,null,false,null]'
SCOPE_HTTP: dict[str, Any] = {
    "type": "http",
    "method": "GET",
    "scheme": "https",
    "path": "/v1/products",
    "raw_path": b"/v1/products",
    "root_path": "",
    "query_string": f"limit={PAGE}".encode(),
    "headers": [(b"host", b"api.example.com"), (b"accept", b"application/json")],
    "server": ("api.example.com", 443),
}


def demo_products(count: int) -> list[Product]:
    products = []
    for n, row in enumerate(_rows(count, seed=count), start=1):
        created = EPOCH + dt.timedelta(minutes=n, microseconds=n)
        columns = cast(DemoRow, row)
        products.append(Product(n, *columns, version=1, created_at=created, updated_at=created))
    return products


def list_page(rows: list[Product], cursors: CursorCodec) -> Callable[[], bytes]:
    """The list endpoint's answer for rows fetched with ``limit + 1``, as its body."""

    def run() -> bytes:
        response = paged_response(
            Request(SCOPE_HTTP),
            rows,
            limit=PAGE,
            cursors=cursors,
            scope=SCOPE,
            position=lambda p: (p.created_at, p.id),
            view=catalog.product_view,
        )
        return bytes(response.body)

    return run


def page_content(rows: list[Product]) -> dict[str, Any]:
    """What ``page_response`` hands its JSONResponse: the views as Structs, a 74-char cursor."""
    return {"data": [catalog.product_view(p) for p in rows[:PAGE]], "next_cursor": "c" * 74}


def stdlib_dumps(content: Any) -> bytes:
    # Starlette's JSONResponse.render, plus the one hook the stdlib needs for our Structs.
    return json.dumps(
        content,
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
        default=msgspec.to_builtins,
    ).encode("utf-8")


def product_body(product: Product) -> bytes:
    return orjson.dumps(
        {
            "sku": product.sku,
            "name": product.name,
            "category": product.category,
            "price": {"amount_minor": product.price_minor, "currency": product.currency},
            "description": product.description,
            "stock": product.stock,
        }
    )


def order_body() -> bytes:
    lines = [{"product_id": 1000 + 37 * n, "quantity": 1 + n % 3} for n in range(ORDER_LINES)]
    return orjson.dumps({"items": lines})


@pytest.fixture(scope="module")
def products() -> list[Product]:
    return demo_products(PAGE + 1)


# Each bench checks what its timed call returned (``--benchmark-only`` skips plain tests): the
# bytes decode to the data they were made from, the decoders really validate.


@pytest.mark.benchmark(group="serialization-encode")
def test_encode_product(benchmark: BenchmarkFixture, products: list[Product]) -> None:
    cached = benchmark(render, products[0])
    assert msgspec.json.decode(cached.body, type=catalog.ProductView) == catalog.product_view(
        products[0]
    )
    assert cached.etag == '"p1v1"'


@pytest.mark.benchmark(group="serialization-encode")
def test_encode_product_page(benchmark: BenchmarkFixture, products: list[Product]) -> None:
    """The whole list answer: views, cursor, Link header, orjson body."""
    cursors = CursorCodec("x" * 32)
    benchmark.extra_info["items"] = PAGE
    body = orjson.loads(benchmark(list_page(products, cursors)))
    views = [catalog.product_view(p) for p in products[:PAGE]]
    assert body["data"] == msgspec.to_builtins(views)
    assert cursors.decode(SCOPE, body["next_cursor"]) == (products[PAGE - 1].created_at, PAGE)


@pytest.mark.benchmark(group="serialization-encode")
@pytest.mark.parametrize("encoder", ["orjson", "stdlib"])
def test_dump_page_content(
    benchmark: BenchmarkFixture, products: list[Product], encoder: str
) -> None:
    """The body alone, from the same 50 views: our ``dumps`` against the stdlib's."""
    content = page_content(products)
    benchmark.extra_info["items"] = PAGE
    encoded = benchmark({"orjson": dumps, "stdlib": stdlib_dumps}[encoder], content)
    assert orjson.loads(encoded) == msgspec.to_builtins(content)


@pytest.mark.benchmark(group="serialization-decode")
def test_decode_product_create(benchmark: BenchmarkFixture, products: list[Product]) -> None:
    product = products[0]
    body = product_body(product)
    new = benchmark(decode_json, body, catalog.NewProductBody)
    assert orjson.loads(msgspec.json.encode(new)) == orjson.loads(body)
    assert (new.price.amount_minor, new.stock) == (product.price_minor, product.stock)
    with pytest.raises(errors.ValidationFailed):
        decode_json(body.replace(b'"EUR"', b'"eur"'), catalog.NewProductBody)


@pytest.mark.benchmark(group="serialization-decode")
def test_decode_order(benchmark: BenchmarkFixture) -> None:
    body = order_body()
    benchmark.extra_info["lines"] = ORDER_LINES
    order = benchmark(decode_json, body, orders.NewOrderBody)
    assert orjson.loads(msgspec.json.encode(order)) == orjson.loads(body)
    with pytest.raises(errors.ValidationFailed):
        decode_json(body.replace(b'"quantity":1', b'"quantity":0'), orders.NewOrderBody)


def _per_encode_us(encode: Callable[[Any], bytes], content: Any) -> float:
    start = time.perf_counter()
    for _ in range(ENCODES_PER_SAMPLE):
        encode(content)
    return (time.perf_counter() - start) / ENCODES_PER_SAMPLE * 1e6


@pytest.mark.benchmark(group="serialization-ratio")
def test_orjson_beats_stdlib_on_a_page(
    benchmark: BenchmarkFixture, products: list[Product], capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleave the encoders so machine noise hits them alike, then compare medians.

    Asserted, unlike the other ratios here: orjson is in the dependencies for this alone.
    """
    content = page_content(products)
    variants: dict[str, Callable[[Any], bytes]] = {"orjson": dumps, "stdlib": stdlib_dumps}

    def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(PAIR_ROUNDS):
            for name, encode in variants.items():
                samples[name].append(_per_encode_us(encode, content))
        return {name: statistics.median(times) for name, times in samples.items()}

    medians = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    ratio = medians["stdlib"] / medians["orjson"]
    benchmark.extra_info.update(medians, ratio=ratio)
    with capsys.disabled():
        print(
            f"\n{PAGE}-product page body: orjson {medians['orjson']:.1f} us,"
            f" stdlib json {medians['stdlib']:.1f} us (stdlib/orjson {ratio:.1f}x)"
        )
    assert ratio > 1.0, medians
