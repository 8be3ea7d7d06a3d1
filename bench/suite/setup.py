"""The bench database and what the load scripts send: accounts, tokens, keys and list pages.

A run creates its own database (dropped at the end), seeds it with the project's own COPY
seeders, and writes each input the Lua scripts read into a file of the run's work directory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import jwt

from server.auth.passwords import PasswordHasher
from server.catalog.seed import seed_products
from server.db.database import Database, open_pool
from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_LIST_LIMIT = 50


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    password: str


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database for one run, dropped afterwards."""
    name = f"hotpath_bench_{secrets.token_hex(4)}"
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def prepare_database(url: str, *, products: int, accounts: int) -> list[Account]:
    """Migrate, seed the catalog with unlimited-looking stock, add customers with known
    passwords hashed at the production cost (the login scenario verifies them)."""
    return asyncio.run(_prepare(url, products, accounts))


async def _prepare(url: str, products: int, accounts: int) -> list[Account]:
    await migrate(url, MIGRATIONS_DIR)
    db = Database(await open_pool(url, min_size=1, max_size=2), acquire_timeout=30)
    try:
        await seed_products(db, products)
        async with db.connection() as conn:
            await conn.execute("UPDATE products SET stock = 1000000000")
            hasher = PasswordHasher()
            made = []
            for n in range(accounts):
                email = f"bench-{n}@example.com"
                password = secrets.token_urlsafe(18)
                user_id = await conn.fetchval(
                    "INSERT INTO users (email, password_hash, email_verified_at) "
                    "VALUES ($1, $2, now()) RETURNING id",
                    email,
                    await hasher.hash(password),
                )
                made.append(Account(user_id, email, password))
            hasher.close()
            await conn.execute("VACUUM ANALYZE")
        return made
    finally:
        await db.close()


def log_in(base: str, accounts: list[Account]) -> list[str]:
    """One access token per account, from the server under test."""
    tokens = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for account in accounts:
            answer = client.post(
                "/v1/auth/login", json={"email": account.email, "password": account.password}
            )
            answer.raise_for_status()
            tokens.append(str(answer.json()["access_token"]))
    return tokens


def issue_api_keys(base: str, tokens: list[str]) -> list[str]:
    keys = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for token in tokens:
            answer = client.post(
                "/v1/api-keys",
                json={"name": "bench"},
                headers={"authorization": f"Bearer {token}"},
            )
            answer.raise_for_status()
            keys.append(str(answer.json()["key"]))
    return keys


def peer_tokens(accounts: list[Account], secret: str, *, audience: str | None = None) -> list[str]:
    """HS256 tokens as the peers issue them: sub (the user id), iat and exp, which the
    FastAPI template and Litestar's JWTAuth want; BlackSheep's JWT bearer authentication
    wants an audience and an issuer too (``audience`` names both)."""
    now = int(time.time())
    claims: dict[str, object] = {"iat": now, "exp": now + 3600}
    if audience is not None:
        claims |= {"aud": audience, "iss": audience}
    return [
        jwt.encode({"sub": str(account.id), **claims}, secret, algorithm="HS256")
        for account in accounts
    ]


def list_paths(base: str, *, deep_pages: int) -> tuple[str, str]:
    """The first page, and the page ``deep_pages`` cursors in, of the default product list."""
    first = f"/v1/products?limit={_LIST_LIMIT}"
    path = first
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(deep_pages):
            cursor = client.get(path).raise_for_status().json()["next_cursor"]
            if cursor is None:
                break
            path = f"{first}&cursor={cursor}"
    return first, path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path
