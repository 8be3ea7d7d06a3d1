"""The Litestar and BlackSheep peers answer the authenticated read as hotpath does (the same
bytes for the same product), refuse what hotpath refuses, and cache only when told to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from bench.peers import blacksheep_app, litestar_app
from bench.peers.common import JWT_AUDIENCE
from bench.suite.setup import Account, peer_tokens
from tests.fixtures.catalog import Catalog
from tests.fixtures.support import client_for, lifespan

SECRET = "peer-frameworks-secret-" + "y" * 32

Factory = Callable[..., Any]
PEERS: dict[str, tuple[Factory, str | None]] = {
    "litestar": (litestar_app.create_app, None),
    "blacksheep": (blacksheep_app.create_app, JWT_AUDIENCE),
}


def token(audience: str | None, *, secret: str = SECRET) -> str:
    [value] = peer_tokens([Account(1, "peer@example.com", "")], secret, audience=audience)
    return value


@pytest.fixture(params=list(PEERS))
async def peer(
    request: pytest.FixtureRequest, migrated_db: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str | None, Callable[[float], Any]]]:
    factory, audience = PEERS[request.param]

    def make(cache_seconds: float) -> Any:
        return factory(migrated_db, SECRET, pool_size=2, cache_seconds=cache_seconds)

    app = make(0)
    async with lifespan(app), client_for(app) as http:
        yield http, audience, make


async def test_the_read_is_hotpaths_bytes(
    http: httpx.AsyncClient,
    catalog: Catalog,
    peer: tuple[httpx.AsyncClient, str | None, Callable[[float], Any]],
) -> None:
    client, audience, _ = peer
    product = await catalog.create(name="Peer kettle", stock=4)
    ours = await http.get(f"/v1/products/{product['id']}")
    theirs = await client.get(
        f"/v1/products/{product['id']}", headers={"authorization": f"Bearer {token(audience)}"}
    )
    assert ours.status_code == theirs.status_code == 200
    assert theirs.content == ours.content
    assert theirs.headers["content-type"].startswith("application/json")


async def test_no_token_a_forged_one_or_an_unknown_product_is_refused(
    catalog: Catalog,
    db: asyncpg.Connection,
    peer: tuple[httpx.AsyncClient, str | None, Callable[[float], Any]],
) -> None:
    client, audience, _ = peer
    product = await catalog.create()
    path = f"/v1/products/{product['id']}"
    assert (await client.get(path)).status_code == 401
    forged = token(audience, secret="another-secret-" + "z" * 32)
    assert (
        await client.get(path, headers={"authorization": f"Bearer {forged}"})
    ).status_code == 401
    good = {"authorization": f"Bearer {token(audience)}"}
    assert (await client.get("/v1/products/0", headers=good)).status_code == 404
    await db.execute("UPDATE products SET deleted_at = now() WHERE id = $1", product["id"])
    assert (await client.get(path, headers=good)).status_code == 404


async def test_a_cached_peer_serves_its_copy_and_an_uncached_one_reads_again(
    catalog: Catalog,
    db: asyncpg.Connection,
    peer: tuple[httpx.AsyncClient, str | None, Callable[[float], Any]],
) -> None:
    uncached, audience, make = peer
    product = await catalog.create(name="Before")
    path = f"/v1/products/{product['id']}"
    good = {"authorization": f"Bearer {token(audience)}"}
    cached_app = make(3600)
    async with lifespan(cached_app), client_for(cached_app) as cached:
        assert (await cached.get(path, headers=good)).json()["name"] == "Before"
        await db.execute("UPDATE products SET name = 'After' WHERE id = $1", product["id"])
        assert (await cached.get(path, headers=good)).json()["name"] == "Before"
        assert (await uncached.get(path, headers=good)).json()["name"] == "After"
