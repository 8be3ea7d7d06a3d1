"""An API key revoked on one replica (a separate server process) is refused by another within a
second: through Redis pub/sub and, with Redis killed, through the PostgreSQL poll."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from server.auth.keys import generate_dev_key
from tests.e2e.test_granian import wait_until_live
from tests.e2e.test_revocation_replicas import Redis
from tests.support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def throwaway_redis() -> Iterator[Redis]:
    server = Redis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def two_replicas(
    migrated_db: str, throwaway_redis: Redis, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    generate_dev_key(tmp_path / "jwt", "EdDSA")  # both replicas must share one signing key
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": migrated_db,
        "REDIS_URL": f"redis://127.0.0.1:{throwaway_redis.port}/0",
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(tmp_path),
        "HOTPATH_ACCESS_LOG": "false",
        "HOTPATH_ARGON2_TIME_COST": "1",
        "HOTPATH_ARGON2_MEMORY_KIB": "1024",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    processes: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base, process in zip(bases, processes, strict=True):
            wait_until_live(base, process)
        yield bases[0], bases[1]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def insert_admin(dsn: str, email: str, password_hash: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO users (email, password_hash, roles) VALUES ($1, $2, '{admin}')",
            email,
            password_hash,
        )
    finally:
        await conn.close()


def status_with_key(base: str, key: str, path: str = "/v1/users/me") -> int:
    return httpx.get(f"{base}{path}", headers={"x-api-key": key}).status_code


def seconds_until_refused(base: str, key: str, limit: float = 3.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status = status_with_key(base, key)
        if status == 401:
            return time.monotonic() - started
        assert status == 200, status
        time.sleep(0.02)
    raise AssertionError(f"the key still worked on the other replica after {limit} s")


def test_a_revoked_key_is_refused_by_the_other_replica_with_and_without_redis(
    two_replicas: tuple[str, str], throwaway_redis: Redis, migrated_db: str
) -> None:
    first, second = two_replicas
    email = f"key-replica-{secrets.token_hex(4)}@example.com"
    password = "replicated passphrase " + secrets.token_hex(4)
    digest = PasswordHasher(time_cost=1, memory_cost=1024).hash(password)
    asyncio.run(insert_admin(migrated_db, email, digest))
    login = httpx.post(f"{first}/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    session = {"authorization": f"Bearer {login.json()['access_token']}"}

    for redis_up in (True, False):
        if not redis_up:
            throwaway_redis.kill()
        created = httpx.post(
            f"{first}/v1/api-keys",
            json={"name": f"replicated (redis up: {redis_up})", "scopes": ["users:read"]},
            headers=session,
        )
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        # Verified, and cached, by both replicas; the scope works on the other one.
        assert status_with_key(second, key) == 200
        assert status_with_key(second, key, "/v1/users?limit=1") == 200
        assert status_with_key(first, key) == 200

        revoked = httpx.delete(f"{first}/v1/api-keys/{key_id}", headers=session)
        assert revoked.status_code == 204, revoked.text
        assert status_with_key(first, key) == 401  # the revoking replica: at once
        assert seconds_until_refused(second, key) < 1.0, f"redis up: {redis_up}"
