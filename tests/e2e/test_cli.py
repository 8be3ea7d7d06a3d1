"""The command line as an operator uses it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher
from openapi_spec_validator import validate

from server.migrate import load_migrations
from server.paths import MIGRATIONS_DIR
from tests.conftest import database_url, drop_database
from tests.e2e.servers import wait_until_live
from tests.support import free_port

pytestmark = pytest.mark.slow


def run(
    args: list[str], env: dict[str, str], timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    env.pop("DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["HOTPATH_DATA_DIR"] = str(tmp_path / "data")
    env["HOTPATH_ENV"] = "test"
    return env


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    url = database_url(f"hotpath_cli_{secrets.token_hex(4)}")
    yield url
    asyncio.run(drop_database(url))


def test_openapi_command_writes_a_valid_document(base_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    result = run(["openapi", "--out", str(out)], base_env)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_bytes())
    validate(document)
    assert "/readyz" in document["paths"]


def test_bad_settings_are_all_reported_and_nothing_starts(base_env: dict[str, str]) -> None:
    env = {**base_env, "HOTPATH_PORT": "http", "HOTPATH_ENV": "production"}
    result = run(["migrate"], env)
    assert result.returncode != 0
    for name in ("HOTPATH_PORT", "DATABASE_URL", "HOTPATH_SECRET_KEY"):
        assert name in result.stderr


async def test_migrate_creates_the_database_and_is_idempotent(
    base_env: dict[str, str], fresh_database_url: str
) -> None:
    env = {**base_env, "DATABASE_URL": fresh_database_url}
    first = run(["migrate"], env)
    assert first.returncode == 0, first.stderr + first.stdout
    second = run(["migrate"], env)
    assert second.returncode == 0, second.stderr + second.stdout
    conn = await asyncpg.connect(fresh_database_url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == [m.version for m in load_migrations(MIGRATIONS_DIR)]


def test_serve_prepare_is_what_make_run_does(
    base_env: dict[str, str], fresh_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**base_env, "DATABASE_URL": fresh_database_url, "HOTPATH_ACCESS_LOG": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--prepare", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base, process, seconds=60)
        assert httpx.get(base + "/readyz", timeout=5).status_code == 200
        assert httpx.get(base + "/docs", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"hotpath serving on {base}" in output
    assert f"{base}/docs" in output
    logins = json.loads((tmp_path / "data" / "demo_logins.json").read_text())
    assert set(logins) == {"admin@example.com", "staff@example.com", "user@example.com"}
    for email, password in logins.items():
        assert f"{email}  {password}" in output
    assert "secret_key" not in output


async def test_create_admin_reads_the_password_from_stdin(
    base_env: dict[str, str], fresh_database_url: str
) -> None:
    env = {**base_env, "DATABASE_URL": fresh_database_url}
    assert run(["migrate"], env).returncode == 0
    email = "root-admin@example.com"
    password = "long enough passphrase " + secrets.token_hex(4)
    weak = run(["create-admin", "--email", email, "--password-stdin"], env, stdin="short\n")
    assert weak.returncode != 0
    assert "not accepted" in weak.stderr
    made = run(["create-admin", "--email", email, "--password-stdin"], env, stdin=password + "\n")
    assert made.returncode == 0, made.stderr
    assert password not in made.stdout + made.stderr
    again = run(["create-admin", "--email", email, "--password-stdin"], env, stdin=password + "\n")
    assert again.returncode != 0
    assert "already exists" in again.stderr
    conn = await asyncpg.connect(fresh_database_url)
    try:
        row = await conn.fetchrow("SELECT roles, password_hash FROM users WHERE email = $1", email)
    finally:
        await conn.close()
    assert row is not None
    assert row["roles"] == ["admin"]
    assert PasswordHasher().verify(row["password_hash"], password)


async def test_seed_fills_a_small_catalog_once(
    base_env: dict[str, str], fresh_database_url: str
) -> None:
    env = {**base_env, "DATABASE_URL": fresh_database_url}
    assert run(["migrate"], env).returncode == 0
    command = ["seed", "--users", "20", "--products", "2000"]
    first = run(command, env)
    assert first.returncode == 0, first.stderr + first.stdout
    conn = await asyncpg.connect(fresh_database_url)
    try:
        catalog = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT sku) AS skus, max(id) AS last_id,"
            " now() - min(created_at) AS oldest FROM products"
        )
        assert catalog is not None
        assert (catalog["n"], catalog["skus"]) == (2000, 2000)
        assert catalog["oldest"] > dt.timedelta(days=300)  # a catalog a year old, not one instant
        assert await conn.fetchval("SELECT count(*) FROM users") == 23  # 3 demo logins + 20

        second = run(command, env)
        assert second.returncode == 0, second.stderr + second.stdout
        assert await conn.fetchval("SELECT count(*) FROM products") == 2000
        assert await conn.fetchval("SELECT max(id) FROM products") == catalog["last_id"]
        assert await conn.fetchval("SELECT count(*) FROM users") == 23
    finally:
        await conn.close()
