"""GET /v1/products?q=: prefix- and stem-aware search over name, SKU and description, ranked.

A fixed catalog (a category of its own), the queries a shopper types, and the results expected
first: a change that makes search worse fails here. Then paging by relevance: every match once,
best first, with cursors that serve only their own search."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.fixtures.catalog import Catalog, unique_category
from tests.fixtures.support import assert_problem

# (sku stem, name, description): the SKU is made unique per run with a suffix the queries
# never name, except the SKU queries, which name the whole SKU.
SHELF = [
    ("KET", "Stainless steel kettle", "Boils 1.7 litres of water."),
    ("KEL", "Electric kettle", "A cordless electric kettle with a keep-warm setting."),
    ("GYM", "Kettlebell 12 kg", "Cast iron weight for swings."),
    ("TOW", "Tea towel", "Linen towel; dries a kettle or a teapot."),
    ("POT", "Ceramic teapot", "Holds six cups of tea."),
    ("LMP", "Walnut desk lamp", "Warm light for reading."),
    ("SHD", "Lamp shade", "Linen shade for a floor lamp."),
    ("ORG", "Drawer organizers", "Bamboo trays in three sizes."),
]

# (q, the names expected first, in order; then the names that must be somewhere in the
# results, or None when the results must be exactly the names given first).
RELEVANCE: list[tuple[str, list[str], set[str] | None]] = [
    # A word typed whole ranks what has it above what has a longer word it begins.
    ("kettle", ["Electric kettle", "Stainless steel kettle"], {"Kettlebell 12 kg", "Tea towel"}),
    # Stemmed: the plural finds the singular.
    ("kettles", ["Electric kettle", "Stainless steel kettle"], {"Tea towel"}),
    # A prefix finds every word it begins.
    ("ket", [], {"Electric kettle", "Stainless steel kettle", "Kettlebell 12 kg", "Tea towel"}),
    ("kettleb", ["Kettlebell 12 kg"], None),
    # Every word must match (AND), in any order.
    ("steel kettle", ["Stainless steel kettle"], None),
    ("kettle steel", ["Stainless steel kettle"], None),
    # The name outranks the description.
    ("teapot", ["Ceramic teapot", "Tea towel"], None),
    ("lamp", ["Lamp shade", "Walnut desk lamp"], None),
    # Words of the description only.
    ("cordless", ["Electric kettle"], None),
    ("linen", [], {"Tea towel", "Lamp shade"}),
    # Stems both ways: "organizer" and "organizers".
    ("organizer", ["Drawer organizers"], None),
    # Case and stop words do not matter.
    ("THE KETTLEBELL", ["Kettlebell 12 kg"], None),
    # Nothing.
    ("anvil", [], set()),
]


@pytest.fixture
async def shelf(http: httpx.AsyncClient, catalog: Catalog) -> tuple[str, dict[str, dict[str, Any]]]:
    category = unique_category()
    # Digits: a hex run such as 1E5 would be read as a number in scientific notation.
    run = f"{secrets.randbelow(10**6):06d}"
    made = {}
    for stem, name, description in SHELF:
        body = {
            "sku": f"{stem}-{run}",
            "name": name,
            "description": description,
            "category": category,
            "price": {"amount_minor": 1000, "currency": "EUR"},
            "stock": 1,
        }
        response = await http.post("/v1/products", json=body, headers=catalog.headers)
        assert response.status_code == 201, response.text
        made[name] = response.json()
    return category, made


async def search(http: httpx.AsyncClient, category: str, q: str, **more: Any) -> list[str]:
    response = await http.get("/v1/products", params={"category": category, "q": q, **more})
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()["data"]]


@pytest.mark.parametrize(("q", "first", "also"), RELEVANCE)
async def test_search_finds_and_ranks_what_a_shopper_means(
    http: httpx.AsyncClient,
    shelf: tuple[str, dict[str, dict[str, Any]]],
    q: str,
    first: list[str],
    also: set[str] | None,
) -> None:
    category, _ = shelf
    names = await search(http, category, q)
    assert names[: len(first)] == first, (q, names)
    if also is None:
        assert names == first, (q, names)
    else:
        assert also <= set(names), (q, names)
        assert len(names) == len(set(names)), names


async def test_a_sku_is_found_whole_by_its_prefix_and_by_its_number(
    http: httpx.AsyncClient, shelf: tuple[str, dict[str, dict[str, Any]]]
) -> None:
    category, made = shelf
    sku = made["Electric kettle"]["sku"]  # KEL-<run>
    run = sku.partition("-")[2]
    assert await search(http, category, sku) == ["Electric kettle"]
    assert await search(http, category, sku.lower()) == ["Electric kettle"]
    assert await search(http, category, sku[:-1]) == ["Electric kettle"]
    assert await search(http, category, f"kel {run}") == ["Electric kettle"]
    assert set(await search(http, category, run)) == {name for _, name, _ in SHELF}


async def test_search_text_is_never_read_as_query_syntax(
    http: httpx.AsyncClient, shelf: tuple[str, dict[str, dict[str, Any]]]
) -> None:
    category, _ = shelf
    for q in ("'", "\\", ":*", "&|!()", "kettle:*", "kettle | lamp", "!kettle", "o'neil's", "<->"):
        response = await http.get("/v1/products", params={"category": category, "q": q})
        assert response.status_code == 200, (q, response.text)
    # Operators are punctuation: "kettle | lamp" needs both words, as "kettle lamp" does.
    assert await search(http, category, "kettle | lamp") == []


async def test_a_relevance_walk_sees_every_match_once_best_first(
    http: httpx.AsyncClient, shelf: tuple[str, dict[str, dict[str, Any]]]
) -> None:
    category, _ = shelf
    whole = await search(http, category, "ket", limit=100)
    assert len(whole) == 4
    for limit in (1, 2, 3):
        params: dict[str, Any] = {"category": category, "q": "ket", "limit": limit}
        seen: list[str] = []
        response = await http.get("/v1/products", params=params)
        for _ in range(10):
            assert response.status_code == 200, response.text
            seen += [p["name"] for p in response.json()["data"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
            response = await http.get("/v1/products", params={**params, "cursor": cursor})
        assert seen == whole, (limit, seen)


async def test_a_relevance_cursor_serves_only_its_own_search(
    http: httpx.AsyncClient, shelf: tuple[str, dict[str, dict[str, Any]]]
) -> None:
    category, _ = shelf
    params: dict[str, Any] = {"category": category, "q": "ket", "limit": 1}
    cursor = (await http.get("/v1/products", params=params)).json()["next_cursor"]
    assert cursor is not None
    for change in ({"q": "kettle"}, {"sort": "created_at"}, {"currency": "EUR"}, {"q": None}):
        other = {k: v for k, v in {**params, **change, "cursor": cursor}.items() if v is not None}
        response = await http.get("/v1/products", params=other)
        assert_problem(response, 400, "invalid-cursor", case=change)


async def test_a_search_in_another_order_lists_the_same_matches(
    http: httpx.AsyncClient, shelf: tuple[str, dict[str, dict[str, Any]]]
) -> None:
    category, made = shelf
    found = set(await search(http, category, "ket", limit=100))
    by_name = await search(http, category, "ket", sort="name", limit=100)
    assert by_name == sorted(found)
    by_age = await search(http, category, "ket", sort="created_at", order="desc", limit=100)
    ages = sorted(found, key=lambda n: (made[n]["created_at"], made[n]["id"]), reverse=True)
    assert by_age == ages
    by_price = await search(http, category, "ket", sort="price", currency="EUR", limit=2)
    assert len(by_price) == 2
    assert set(by_price) <= found
