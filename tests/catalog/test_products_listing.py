"""GET /v1/products: keyset pages with signed cursors for every sort order and direction, the
filters, the 400s, and a property: a walk sees each row once while rows come and go."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from server.db.sqlfiles import load_queries
from tests.fixtures.catalog import Catalog, unique_category
from tests.fixtures.support import assert_problem

SORTS = [(sort, order) for sort in ("created_at", "price", "name") for order in ("asc", "desc")]

# (name, price, stock): duplicate names and prices, so the id tie-breaker matters. Names are one
# lowercase ASCII word, which sorts the same in Python and under any PostgreSQL collation.
ROWS = [
    ("mug", 500, 3),
    ("anvil", 100, 0),
    ("kettle", 300, 1),
    ("anvil", 100, 2),
    ("teapot", 900, 0),
    ("kettle", 300, 7),
    ("bucket", 0, 1),
    ("zither", 250, 4),
    ("mug", 500, 0),
    ("drum", 1000000, 9),
    ("candle", 300, 1),
]


def sort_key(sort: str, product: dict[str, Any]) -> tuple[Any, int]:
    if sort == "created_at":
        value: Any = dt.datetime.fromisoformat(product["created_at"])
    elif sort == "price":
        value = product["price"]["amount_minor"]
    else:
        value = product["name"]
    return value, product["id"]


def expected_ids(products: list[dict[str, Any]], sort: str, order: str) -> list[int]:
    ordered = sorted(products, key=lambda p: sort_key(sort, p), reverse=order == "desc")
    return [p["id"] for p in ordered]


def next_link(response: httpx.Response) -> str | None:
    link: str | None = response.headers.get("link")
    if link is None:
        return None
    target, _, rel = link.partition(";")
    assert rel.strip() == 'rel="next"', link
    assert target.startswith("<"), link
    assert target.endswith(">"), link
    return target[1:-1]


async def walk(
    http: httpx.AsyncClient, params: dict[str, Any], *, max_pages: int = 100
) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following the Link header; checks it against next_cursor."""
    pages: list[list[dict[str, Any]]] = []
    response = await http.get("/v1/products", params=params)
    for _ in range(max_pages):
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["data"])
        assert len(body["data"]) <= int(params.get("limit", 20))
        link = next_link(response)
        if body["next_cursor"] is None:
            assert link is None, link
            return pages
        assert body["data"], "an empty page with a next cursor"
        assert len(body["data"]) == int(params.get("limit", 20))
        assert link is not None, "a next cursor without a Link header"
        query = parse_qs(urlsplit(link).query)
        assert query["cursor"] == [body["next_cursor"]]
        assert {k: v[0] for k, v in query.items() if k != "cursor"} == {
            k: str(v) for k, v in params.items() if k != "cursor"
        }
        response = await http.get(link)
    raise AssertionError("the listing never ended")


def ids_of(pages: list[list[dict[str, Any]]]) -> list[int]:
    return [p["id"] for page in pages for p in page]


@pytest.fixture
async def stocked(catalog: Catalog) -> tuple[str, list[dict[str, Any]]]:
    """A category of its own holding ROWS."""
    category = unique_category()
    products = [
        await catalog.create(category=category, name=name, price=price, stock=stock)
        for name, price, stock in ROWS
    ]
    for product in products:
        del product["etag"]
    return category, products


# --- pages -------------------------------------------------------------------------------


async def test_every_sort_walks_all_rows_once_in_order(
    http: httpx.AsyncClient, stocked: tuple[str, list[dict[str, Any]]]
) -> None:
    category, products = stocked
    by_id = {p["id"]: p for p in products}
    for sort, order in SORTS:
        expected = expected_ids(products, sort, order)
        for limit in (1, 3, 10, 11, 12):
            params = {"category": category, "sort": sort, "order": order, "limit": limit}
            params["currency"] = "EUR"  # sort=price needs it; the other sorts take it too
            pages = await walk(http, params)
            seen = ids_of(pages)
            assert seen == expected, (params, seen, expected)
            assert len(pages) == max(1, -(-len(products) // limit)), params
        # The rows on a page are the rows GET /v1/products/{id} answers.
        for row in pages[0]:
            assert row == by_id[row["id"]]


async def test_the_defaults_are_created_at_ascending_twenty_a_page(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    category = unique_category()
    products = [await catalog.create(category=category, name="same") for _ in range(21)]
    first = await http.get("/v1/products", params={"category": category})
    assert first.status_code == 200
    assert [p["id"] for p in first.json()["data"]] == [p["id"] for p in products[:20]]
    assert first.json()["next_cursor"] is not None
    pages = await walk(http, {"category": category})
    assert ids_of(pages) == [p["id"] for p in products]


async def test_an_empty_listing(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/products", params={"category": unique_category()})
    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}
    assert "link" not in response.headers


async def test_the_listing_is_public(http: httpx.AsyncClient, catalog: Catalog) -> None:
    product = await catalog.create()
    response = await http.get("/v1/products", params={"category": product["category"]})
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["data"]] == [product["id"]]


async def test_a_listed_row_is_the_bytes_of_its_own_read(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    """A listing builds each row's view straight from its record (the repository), a read of
    one product from a Product (``schemas.product_view``): every kind of listing (each query
    family of sql/products_list.sql) writes a row as that read does, byte for byte."""
    category = unique_category()
    made = [
        await catalog.create(category=category, name="Dimmable lamp", stock=0, price=0),
        await catalog.create(category=category, name="Lamp shade", stock=7, price=1250),
    ]
    reads = [(await http.get(f"/v1/products/{p['id']}")).content for p in made]
    listings: list[dict[str, Any]] = [
        {},
        {"sort": "price", "currency": "EUR", "order": "desc"},
        {"sort": "name"},
        {"q": "lamp", "sort": "created_at"},
        {"q": "lamp"},  # by relevance
    ]
    for params in listings:
        page = await http.get("/v1/products", params={"category": category, **params})
        assert page.status_code == 200, page.text
        assert len(page.json()["data"]) == 2, params
        for read in reads:
            assert read in page.content, params


# --- filters -----------------------------------------------------------------------------


@pytest.fixture
async def shelf(catalog: Catalog) -> tuple[str, list[dict[str, Any]]]:
    category = unique_category()
    rows = [
        ("Steel Kettle", 3000, 2),
        ("Glass Kettle", 4500, 0),
        ("Kettle", 1000, 1),
        ("Teapot", 3000, 5),
        ("Steel Mug", 800, 0),
        ("Kettlebell", 6000, 3),
        ("Tea Kettle Deluxe", 12000, 1),
    ]
    products = [
        await catalog.create(category=category, name=name, price=price, stock=stock)
        for name, price, stock in rows
    ]
    return category, products


def matching(
    products: list[dict[str, Any]],
    *,
    words: tuple[str, ...] = (),
    min_price: int | None = None,
    max_price: int | None = None,
    in_stock: bool = False,
) -> list[int]:
    def keep(p: dict[str, Any]) -> bool:
        tokens = p["name"].lower().split()
        price = p["price"]["amount_minor"]
        return (
            # Each word begins a word of the name (the shelf's words stem to themselves).
            all(any(token.startswith(word) for token in tokens) for word in words)
            and (min_price is None or price >= min_price)
            and (max_price is None or price <= max_price)
            and (not in_stock or p["stock"] > 0)
        )

    return expected_ids([p for p in products if keep(p)], "created_at", "asc")


FILTERS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"q": "kettle"}, {"words": ("kettle",)}),
    ({"q": "KETTLE"}, {"words": ("kettle",)}),
    ({"q": "steel kettle"}, {"words": ("steel", "kettle")}),
    ({"q": "nothing"}, {"words": ("nothing",)}),
    ({"q": "ket"}, {"words": ("ket",)}),
    ({"q": "kettles"}, {"words": ("kettle",)}),
    ({"currency": "EUR", "min_price": 3000}, {"min_price": 3000}),
    ({"currency": "EUR", "max_price": 3000}, {"max_price": 3000}),
    (
        {"currency": "EUR", "min_price": 1000, "max_price": 4500},
        {"min_price": 1000, "max_price": 4500},
    ),
    (
        {"currency": "EUR", "min_price": 3000, "max_price": 3000},
        {"min_price": 3000, "max_price": 3000},
    ),
    ({"currency": "EUR"}, {}),
    ({"in_stock": "true"}, {"in_stock": True}),
    ({"in_stock": "false"}, {}),
    (
        {"q": "kettle", "currency": "EUR", "min_price": 2000, "in_stock": "true"},
        {"words": ("kettle",), "min_price": 2000, "in_stock": True},
    ),
]


async def test_filters(http: httpx.AsyncClient, shelf: tuple[str, list[dict[str, Any]]]) -> None:
    category, products = shelf
    for params, expect in FILTERS:
        wanted = matching(products, **expect)
        for limit in (1, 20):
            by_age = {**params, "category": category, "limit": limit, "sort": "created_at"}
            pages = await walk(http, by_age)
            assert ids_of(pages) == wanted, (params, limit)
        # And in another order: the same rows.
        by_price = {**params, "category": category, "sort": "price", "order": "desc"}
        by_price["currency"] = "EUR"
        assert sorted(ids_of(await walk(http, by_price))) == sorted(wanted), params


async def test_the_category_filter_isolates(http: httpx.AsyncClient, catalog: Catalog) -> None:
    mine, theirs = unique_category(), unique_category()
    a = await catalog.create(category=mine)
    await catalog.create(category=theirs)
    response = await http.get("/v1/products", params={"category": mine})
    assert [p["id"] for p in response.json()["data"]] == [a["id"]]


_SEARCH = (None, None, "zzqx", None, None, False, None, 21, None)
_IN_EUR = (None, None, None, None, None, False, None, 21, "EUR")
# (query, its arguments: cursor, q, min, max, in_stock, category, limit, currency; the indexes
# it may read). asyncpg keeps its statements prepared, and PostgreSQL may plan one for any
# parameters after five runs: each listing reads an index in both kinds of plan. A listing
# without a search reads its sort's index in order (no sort step); a search reads the search
# index (then orders what it found).
INDEXED: list[tuple[str, tuple[Any, ...], tuple[str, ...]]] = [
    ("list_products_by_created_asc", _IN_EUR, ("products_created_idx",)),
    ("list_products_matching_by_created_asc", _SEARCH, ("products_search_document_idx",)),
    ("list_products_matching_by_name_desc", _SEARCH, ("products_search_document_idx",)),
    (
        "list_products_matching_by_price_asc",
        (*_SEARCH[:-1], "EUR"),
        ("products_search_document_idx",),
    ),
    ("list_products_by_relevance", _SEARCH, ("products_search_document_idx",)),
    # With every price in one currency the old (price_minor, id) index serves as well.
    ("list_products_by_price_asc", _IN_EUR, ("products_currency_price_idx", "products_price_idx")),
    ("list_products_by_price_desc", _IN_EUR, ("products_currency_price_idx", "products_price_idx")),
]


@pytest.mark.parametrize(("name", "args", "indexes"), INDEXED)
async def test_every_listing_reads_an_index_whatever_its_plan(
    db: asyncpg.Connection, name: str, args: tuple[Any, ...], indexes: tuple[str, ...]
) -> None:
    """On a table large enough for the planner to care (rows added in a transaction that is
    rolled back; only the row-count estimate in pg_class, which ANALYZE updates in place,
    outlives it)."""
    sql = load_queries().sql(name)
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(
            "INSERT INTO products (sku, name, description, category, price_minor, currency, stock)"
            " SELECT 'index-probe-' || g || '-' || md5(random()::text), 'item ' || md5(g::text),"
            " 'a plain item', 'index-probe', g, (ARRAY['EUR', 'USD'])[1 + g % 2], 1"
            " FROM generate_series(1, 20000) g"
        )
        await db.execute("ANALYZE products")  # sees this transaction's rows
        for mode in ("force_custom_plan", "force_generic_plan"):
            await db.execute(f"SET LOCAL plan_cache_mode = {mode}")
            statement = await db.prepare("EXPLAIN (FORMAT JSON) " + sql)
            plan = str(await statement.fetchval(*args))
            assert any(index in plan for index in indexes), (mode, plan)
            assert "Seq Scan" not in plan, (mode, plan)
            if "matching" not in name and "relevance" not in name:
                assert '"Node Type": "Sort"' not in plan, (mode, plan)
    finally:
        await transaction.rollback()


# --- bad requests ------------------------------------------------------------------------


BAD_QUERIES = [
    ("colour=red", "unknown-parameter"),
    ("page=2", "unknown-parameter"),
    ("offset=10", "unknown-parameter"),
    ("limit=1&limit=2", "unknown-parameter"),
    ("limit=101", "invalid-parameter"),
    ("limit=1000000", "invalid-parameter"),
    ("limit=0", "invalid-parameter"),
    ("limit=-1", "invalid-parameter"),
    ("limit=ten", "invalid-parameter"),
    ("sort=sku", "invalid-parameter"),
    ("sort=price_minor", "invalid-parameter"),
    ("order=up", "invalid-parameter"),
    ("min_price=-1", "invalid-parameter"),
    ("max_price=1.5", "invalid-parameter"),
    ("in_stock=maybe", "invalid-parameter"),
    ("category=Not%20a%20slug", "invalid-parameter"),
    ("q=", "invalid-parameter"),
    ("q=" + "x" * 101, "invalid-parameter"),
    ("currency=XAU", "invalid-parameter"),
    ("currency=eur", "invalid-parameter"),
    ("currency=EUR&min_price=5000&max_price=1000", "invalid-parameter"),
    ("min_price=100", "invalid-parameter"),
    ("max_price=100", "invalid-parameter"),
    ("sort=price", "invalid-parameter"),
    ("sort=price&order=desc", "invalid-parameter"),
    ("sort=relevance", "invalid-parameter"),
    ("q=kettle&order=asc", "invalid-parameter"),
    ("q=kettle&sort=relevance&order=asc", "invalid-parameter"),
]


async def test_bad_parameters_are_400(http: httpx.AsyncClient) -> None:
    for query, slug in BAD_QUERIES:
        assert_problem(await http.get(f"/v1/products?{query}"), 400, slug, case=query)


def problem_of(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert_problem(response, status, slug)
    problem: dict[str, Any] = response.json()
    return problem


async def test_unknown_and_repeated_parameters_carry_errors_naming_each(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/v1/products?colour=red&page=2&limit=5")
    problem = problem_of(response, 400, "unknown-parameter")
    assert problem["errors"] == [
        {"pointer": "/colour", "detail": "unknown parameter"},
        {"pointer": "/page", "detail": "unknown parameter"},
    ]
    assert "limit" in problem["detail"]  # what the list does take
    assert "colour" not in problem["detail"].partition("takes")[2]
    twice = problem_of(await http.get("/v1/products?limit=1&limit=2"), 400, "unknown-parameter")
    assert twice["errors"] == [{"pointer": "/limit", "detail": "given twice"}]


@pytest.mark.parametrize(
    ("query", "pointer", "allowed"),
    [
        ("sort=sku", "/sort", "created_at, name, price, relevance"),
        ("order=up", "/order", "asc, desc"),
        ("currency=XAU", "/currency", "EUR"),
    ],
)
async def test_a_value_outside_an_enumeration_names_the_values_allowed(
    http: httpx.AsyncClient, query: str, pointer: str, allowed: str
) -> None:
    problem = problem_of(await http.get(f"/v1/products?{query}"), 400, "invalid-parameter")
    (error,) = problem["errors"]
    assert error["pointer"] == pointer
    assert allowed in error["detail"]
    assert allowed in problem["detail"]


async def test_min_price_above_max_price_is_a_400_not_an_empty_page(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/v1/products?currency=EUR&min_price=5000&max_price=1000")
    problem = problem_of(response, 400, "invalid-parameter")
    assert problem["errors"] == [{"pointer": "/min_price", "detail": "greater than max_price"}]
    equal = await http.get("/v1/products?currency=EUR&min_price=1000&max_price=1000")
    assert equal.status_code == 200


@pytest.mark.parametrize(
    ("query", "needs"),
    [
        ("min_price=100", "min_price"),
        ("max_price=100", "max_price"),
        ("sort=price", "sort"),
        ("min_price=1&max_price=9&sort=price&order=desc", "min_price, max_price, sort"),
    ],
)
async def test_prices_are_compared_in_one_currency_only(
    http: httpx.AsyncClient, query: str, needs: str
) -> None:
    problem = problem_of(await http.get(f"/v1/products?{query}"), 400, "invalid-parameter")
    assert problem["errors"] == [{"pointer": "/currency", "detail": f"required with {needs}"}]
    assert "currency=" in problem["detail"]
    fixed = await http.get(f"/v1/products?{query}&currency=EUR")
    assert fixed.status_code == 200, fixed.text


async def test_a_price_listing_never_ranks_one_currency_among_another(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    category = unique_category()
    eur = [await catalog.create(category=category, price=p, currency="EUR") for p in (400, 600)]
    usd = await catalog.create(category=category, price=500, currency="USD")
    jpy = await catalog.create(category=category, price=500, currency="JPY")
    base = {"category": category, "sort": "price"}
    in_eur = await walk(http, {**base, "currency": "EUR"})
    assert ids_of(in_eur) == [p["id"] for p in eur]
    assert ids_of(await walk(http, {**base, "currency": "USD"})) == [usd["id"]]
    ranged = {"category": category, "currency": "EUR", "min_price": 450, "max_price": 550}
    assert ids_of(await walk(http, ranged)) == []
    # Without a price in the query, every currency is listed.
    every = ids_of(await walk(http, {"category": category}))
    assert sorted(every) == sorted([*(p["id"] for p in eur), usd["id"], jpy["id"]])


async def test_a_nul_character_in_the_search_is_400_not_a_500(served: httpx.AsyncClient) -> None:
    # An anonymous GET must never reach PostgreSQL with a string it cannot hold (U+0000).
    response = await served.get("/v1/products", params={"q": "kettle\x00"})
    assert_problem(response, 400, "invalid-parameter")


async def test_the_largest_limit_is_fine(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/products", params={"limit": 100})
    assert response.status_code == 200, response.text


# --- cursors -----------------------------------------------------------------------------


async def first_cursor(http: httpx.AsyncClient, params: dict[str, Any]) -> str:
    response = await http.get("/v1/products", params=params)
    assert response.status_code == 200, response.text
    cursor = response.json()["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


def tampered(cursor: str) -> list[str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    signature, payload = raw[:16], raw[16:]

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    edited = payload.replace(b"1", b"2") if b"1" in payload else payload + b" "
    return [
        flipped,
        cursor[:-4],
        cursor + "AAAA",
        encode(signature + edited),  # a moved position under the old signature
        encode(bytes(16) + payload),
        encode(payload),
        "not-a-cursor",
        "%%%",
        "é",
        "A",
    ]


async def test_a_tampered_cursor_is_400(
    http: httpx.AsyncClient, stocked: tuple[str, list[dict[str, Any]]]
) -> None:
    category, _ = stocked
    for sort, order in SORTS:
        params: dict[str, Any] = {"category": category, "sort": sort, "order": order, "limit": 2}
        params["currency"] = "EUR"
        cursor = await first_cursor(http, params)
        for bad in tampered(cursor):
            response = await http.get("/v1/products", params={**params, "cursor": bad})
            assert_problem(response, 400, "invalid-cursor", case=(params, bad))


async def test_a_cursor_only_serves_its_own_listing(
    http: httpx.AsyncClient, stocked: tuple[str, list[dict[str, Any]]]
) -> None:
    category, products = stocked
    params: dict[str, Any] = {"category": category, "sort": "price", "order": "asc", "limit": 3}
    params["currency"] = "EUR"
    cursor = await first_cursor(http, params)
    others: list[dict[str, Any]] = [
        {"sort": "name"},
        {"sort": "created_at"},
        {"order": "desc"},
        {"category": unique_category()},
        {"min_price": 0},
        {"max_price": 10**9},
        {"in_stock": "true"},
        {"q": "anvil"},
        {"currency": "USD"},
    ]
    for change in others:
        response = await http.get("/v1/products", params={**params, **change, "cursor": cursor})
        assert_problem(response, 400, "invalid-cursor", case=change)
    without_category = {k: v for k, v in params.items() if k != "category"}
    response = await http.get("/v1/products", params={**without_category, "cursor": cursor})
    assert_problem(response, 400, "invalid-cursor")
    # The same listing without the currency filter is another list too.
    by_name: dict[str, Any] = {"category": category, "sort": "name", "order": "asc", "limit": 3}
    cursor_by_name = await first_cursor(http, {**by_name, "currency": "EUR"})
    response = await http.get("/v1/products", params={**by_name, "cursor": cursor_by_name})
    assert_problem(response, 400, "invalid-cursor")

    # The page size is not part of the listing: a client may change it as it goes.
    rest = await http.get("/v1/products", params={**params, "limit": 100, "cursor": cursor})
    assert rest.status_code == 200, rest.text
    expected = expected_ids(products, "price", "asc")
    assert [p["id"] for p in rest.json()["data"]] == expected[3:]


async def test_a_cursor_of_one_direction_is_refused_by_the_other_for_every_sort(
    http: httpx.AsyncClient, stocked: tuple[str, list[dict[str, Any]]]
) -> None:
    category, _ = stocked
    for sort, order in SORTS:
        params: dict[str, Any] = {"category": category, "sort": sort, "order": order, "limit": 2}
        params["currency"] = "EUR"
        cursor = await first_cursor(http, params)
        for other_sort, other_order in SORTS:
            if (other_sort, other_order) == (sort, order):
                continue
            other = {**params, "sort": other_sort, "order": other_order, "cursor": cursor}
            response = await http.get("/v1/products", params=other)
            assert_problem(response, 400, "invalid-cursor", case=other)


async def test_a_cursor_survives_a_deleted_row(
    http: httpx.AsyncClient, catalog: Catalog, stocked: tuple[str, list[dict[str, Any]]]
) -> None:
    category, products = stocked
    params: dict[str, Any] = {"category": category, "sort": "name", "order": "asc", "limit": 3}
    first = await http.get("/v1/products", params=params)
    last = first.json()["data"][-1]
    current = await http.get(f"/v1/products/{last['id']}")
    gone = await http.delete(
        f"/v1/products/{last['id']}",
        headers={**catalog.headers, "if-match": current.headers["etag"]},
    )
    assert gone.status_code == 204
    rest = await walk(http, {**params, "cursor": first.json()["next_cursor"]})
    assert ids_of(rest) == expected_ids(products, "name", "asc")[3:]


# --- properties --------------------------------------------------------------------------

_PROPERTY = hypothesis_settings(
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@_PROPERTY
@given(
    initial=st.integers(min_value=0, max_value=6),
    limit=st.integers(min_value=1, max_value=4),
    inserts=st.lists(st.integers(min_value=0, max_value=3), max_size=6),
)
async def test_rows_added_during_a_walk_are_seen_once(
    http: httpx.AsyncClient, catalog: Catalog, initial: int, limit: int, inserts: list[int]
) -> None:
    """sort=created_at asc: a row created while a client pages arrives after the cursor's
    position, so it shows up at the end, exactly once."""
    category = unique_category()
    created = [await catalog.create(category=category) for _ in range(initial)]
    params: dict[str, Any] = {"category": category, "limit": limit}
    seen: list[dict[str, Any]] = []
    response = await http.get("/v1/products", params=params)
    for step in range(100):
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["data"]
        if body["next_cursor"] is None:
            break
        for _ in range(inserts[step] if step < len(inserts) else 0):
            created.append(await catalog.create(category=category))
        response = await http.get("/v1/products", params={**params, "cursor": body["next_cursor"]})
    ids = [p["id"] for p in seen]
    assert len(ids) == len(set(ids)), ids
    assert ids == expected_ids(created, "created_at", "asc")


@_PROPERTY
@given(
    prices=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=8),
    limit=st.integers(min_value=1, max_value=3),
    sort=st.sampled_from(["price", "name", "created_at"]),
    order=st.sampled_from(["asc", "desc"]),
    changes=st.lists(st.tuples(st.sampled_from(["add", "delete"]), st.integers(0, 5)), max_size=5),
)
async def test_a_walk_in_any_order_sees_each_lasting_row_once(
    http: httpx.AsyncClient,
    catalog: Catalog,
    prices: list[int],
    limit: int,
    sort: str,
    order: str,
    changes: list[tuple[str, int]],
) -> None:
    """Rows come and go anywhere in a walk, in any sort and direction (prices and names with
    ties): rows there all along are seen exactly once, nothing is seen twice, and what is seen
    is in order."""
    category = unique_category()

    async def create(value: int) -> dict[str, Any]:
        return await catalog.create(category=category, price=value, name=f"Item {value % 3}")

    live = {p["id"]: p for p in [await create(x) for x in prices]}
    lasting = set(live)
    params: dict[str, Any] = {"category": category, "limit": limit, "sort": sort}
    params["order"] = order
    params["currency"] = "EUR"
    seen: list[dict[str, Any]] = []
    response = await http.get("/v1/products", params=params)
    for step in range(100):
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["data"]
        if body["next_cursor"] is None:
            break
        if step < len(changes):
            kind, value = changes[step]
            if kind == "add":
                added = await create(value)
                live[added["id"]] = added
            elif live:
                victim = sorted(live)[value % len(live)]
                etag = live.pop(victim)["etag"]
                lasting.discard(victim)
                headers = {**catalog.headers, "if-match": etag}
                gone = await http.delete(f"/v1/products/{victim}", headers=headers)
                assert gone.status_code == 204, gone.text
        response = await http.get("/v1/products", params={**params, "cursor": body["next_cursor"]})
    ids = [p["id"] for p in seen]
    assert len(ids) == len(set(ids)), ids
    assert lasting <= set(ids), (lasting, ids)
    keys = [sort_key(sort, p) for p in seen]
    assert keys == sorted(keys, reverse=order == "desc")
