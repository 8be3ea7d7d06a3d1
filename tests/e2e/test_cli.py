"""The command line as an operator uses it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher
from openapi_spec_validator import validate

from server.auth.keys import generate_dev_key
from server.db.migrate import load_migrations
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.databases import database_url, drop_database
from tests.fixtures.servers import wait_until_live
from tests.fixtures.support import free_port

pytestmark = pytest.mark.slow


def run(
    args: list[str],
    env: dict[str, str],
    timeout: float = 60,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        cwd=cwd,
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


def test_openapi_command_writes_a_valid_document_and_nothing_else(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    workdir, scratch = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    scratch.mkdir()
    result = run(
        ["openapi", "--out", "openapi.json"], {**base_env, "TMPDIR": str(scratch)}, cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((workdir / "openapi.json").read_bytes())
    validate(document)
    assert "/readyz" in document["paths"]
    # No signing key (nor anything else) left in the current directory, the data directory
    # or the temporary one.
    assert [path.name for path in workdir.iterdir()] == ["openapi.json"]
    assert not Path(base_env["HOTPATH_DATA_DIR"]).exists()
    assert list(scratch.iterdir()) == []


def test_bad_settings_are_all_reported_and_nothing_starts(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "HOTPATH_PORT": "http",
        "HOTPATH_ENV": "production",
        "HOTPATH_SMTP_URL": "smtp://mailer:smtp-password@smtp.example.com?starttls=false",
        "HOTPATH_PUBLIC_URL": "api.example.com",
        "HOTPATH_MAIL_FROM": "nobody",
        "HOTPATH_HOST": "not a host",
    }
    for command in (["migrate"], ["serve"]):
        result = run(command, env)
        assert result.returncode != 0
        for name in (
            "HOTPATH_PORT",
            "DATABASE_URL",
            "HOTPATH_SECRET_KEY",
            "HOTPATH_JWT_KEYS_DIR",
            "HOTPATH_SMTP_URL",
            "HOTPATH_PUBLIC_URL",
            "HOTPATH_MAIL_FROM",
            "HOTPATH_HOST",
        ):
            assert name in result.stderr, (command, name)
        assert "smtp-password" not in result.stderr
        assert "Traceback" not in result.stderr
        assert "hotpath serving" not in result.stdout


def private_key_readable_by_others(keys_dir: Path) -> None:
    kid = generate_dev_key(keys_dir, "EdDSA")
    (keys_dir / f"{kid}.pem").chmod(0o644)


@pytest.mark.parametrize(
    ("env_name", "keys", "extra", "problem"),
    [
        ("production", None, {}, "does not exist"),
        ("production", lambda keys: keys.mkdir(), {}, "no EdDSA keys"),
        ("production", private_key_readable_by_others, {}, "chmod 600"),
        # Outside production the key is generated first, then found not to be the one asked for.
        ("test", None, {"HOTPATH_JWT_ACTIVE_KID": "retired"}, "'retired' is not in the key ring"),
    ],
)
def test_a_key_ring_that_cannot_sign_is_reported_before_anything_starts(
    base_env: dict[str, str],
    tmp_path: Path,
    env_name: str,
    keys: Callable[[Path], None] | None,
    extra: dict[str, str],
    problem: str,
) -> None:
    keys_dir = tmp_path / "keys"
    if keys is not None:
        keys(keys_dir)
    env = {
        **base_env,
        **extra,
        "HOTPATH_ENV": env_name,
        "HOTPATH_JWT_KEYS_DIR": str(keys_dir),
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        # Never reached: nothing may connect before the keys are known to be good.
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    }
    result = run(["serve", "--port", str(free_port()), "--workers", "2"], env)
    assert result.returncode != 0
    assert "invalid settings" in result.stderr
    assert problem in result.stderr
    # One clean message, printed before granian started: no worker ever ran.
    assert "Traceback" not in result.stderr
    assert "worker-" not in result.stderr
    assert "crash loop" not in result.stderr
    assert "hotpath serving" not in result.stdout


@pytest.mark.parametrize(
    ("flag", "value"), [("--port", "0"), ("--port", "65536"), ("--workers", "0"), ("--host", "a b")]
)
def test_serve_refuses_bad_arguments(base_env: dict[str, str], flag: str, value: str) -> None:
    result = run(["serve", flag, value], base_env, timeout=30)
    assert result.returncode == 2
    assert f"argument {flag}: must be" in result.stderr
    assert "hotpath serving" not in result.stdout


def test_serve_refuses_a_port_something_listens_on(
    base_env: dict[str, str], migrated_db: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["serve", "--port", str(port)], {**base_env, "DATABASE_URL": migrated_db})
    assert result.returncode != 0
    assert "hotpath serving" not in result.stdout
    assert f"127.0.0.1 port {port} is already in use" in result.stderr


def test_a_second_serve_on_a_taken_port_is_an_error_not_a_share(
    base_env: dict[str, str], migrated_db: str, tmp_path: Path
) -> None:
    # granian listens with SO_REUSEPORT: without the check a second server joined the first
    # on its port, and every other request met the other one's signing key (a 401).
    port = free_port()
    env = {**base_env, "DATABASE_URL": migrated_db, "HOTPATH_ACCESS_LOG": "false"}
    first = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base, first, seconds=60)
        second = run(["serve", "--port", str(port)], {**env, "HOTPATH_DATA_DIR": str(tmp_path)})
        assert second.returncode != 0
        assert f"port {port} is already in use" in second.stderr
        assert "hotpath serving" not in second.stdout
        assert first.poll() is None
        assert httpx.get(base + "/livez", timeout=5).status_code == 200
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_reuse_port_shares_it_and_announces_only_its_own_started_worker(
    base_env: dict[str, str], migrated_db: str
) -> None:
    # Another listener that accepts connections and never answers shares the port: serve
    # --reuse-port starts beside it and prints its banner once its own worker has started.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**base_env, "DATABASE_URL": migrated_db, "HOTPATH_ACCESS_LOG": "false"}
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port), "--reuse-port"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert process.stdout is not None
            seen = []
            for line in process.stdout:  # JSON lines, the last one announcing the server
                seen.append(json.loads(line))
                if seen[-1]["message"] == "serving":
                    break
            assert seen[-1]["url"] == f"http://127.0.0.1:{port}", seen
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
        assert process.returncode == 0


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
    log = tmp_path / "serve.log"
    with log.open("wb") as out:  # a file, not a terminal: JSON lines, readable while it runs
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--prepare", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base, process, seconds=60)
        assert httpx.get(base + "/readyz", timeout=5).status_code == 200
        assert httpx.get(base + "/docs", timeout=5).status_code == 200
        # The banner comes when serve's own poll (every 0.1 s) has seen the port answer, which
        # can be after this test has: a SIGTERM sent before it would rightly leave it out.
        deadline = time.monotonic() + 20
        while '"message":"serving"' not in log.read_text():
            assert time.monotonic() < deadline, "serve announced nothing"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    output = log.read_text()
    # Not a terminal: the announcement is a JSON line like the rest, and names the file of
    # demo logins rather than printing their passwords into the log.
    lines = [json.loads(line) for line in output.splitlines()]
    (serving,) = [line for line in lines if line["message"] == "serving"]
    assert (serving["url"], serving["docs"]) == (base, f"{base}/docs")
    data_dir = tmp_path / "data"
    assert serving["demo_logins"] == str(data_dir / "demo_logins.json")
    logins = json.loads((data_dir / "demo_logins.json").read_text())
    assert set(logins) == {"admin@example.com", "staff@example.com", "user@example.com"}
    for password in logins.values():
        assert password not in output
    # The generated secrets exist, and neither is printed.
    secret_key = (data_dir / "secret_key").read_text().strip()
    assert len(secret_key) >= 32
    assert secret_key not in output
    (signing_key,) = (data_dir / "jwt").glob("*.pem")
    pem_body = "".join(signing_key.read_text().splitlines()[1:-1])
    assert pem_body
    assert pem_body not in output


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
