"""Revocation reaches another replica (a separate server process) within a second, through
Redis pub/sub and, with Redis killed, through the PostgreSQL poll."""

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
from tests.support import free_port

pytestmark = pytest.mark.slow


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise AssertionError("throwaway redis did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def replicas(migrated_db: str, redis: Redis, tmp_path: Path) -> Iterator[list[str]]:
    generate_dev_key(tmp_path / "jwt", "EdDSA")  # both replicas must share one signing key
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": migrated_db,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(tmp_path),
        "HOTPATH_ACCESS_LOG": "false",
        "HOTPATH_ARGON2_TIME_COST": "1",
        "HOTPATH_ARGON2_MEMORY_KIB": "1024",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    processes, bases = [], []
    try:
        for _ in range(2):
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(process)
            bases.append(f"http://127.0.0.1:{port}")
        for base, process in zip(bases, processes, strict=True):
            wait_until_live(base, process)
        yield bases
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def login(base: str, email: str, password: str) -> str:
    response = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def seconds_until_refused(base: str, token: str, limit: float = 3.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status = httpx.get(f"{base}/v1/users/me", headers={"authorization": f"Bearer {token}"})
        if status.status_code == 401:
            return time.monotonic() - started
        assert status.status_code == 200
        time.sleep(0.02)
    raise AssertionError(f"the token still worked on the other replica after {limit} s")


async def insert_user(dsn: str, email: str, password_hash: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO users (email, password_hash) VALUES ($1, $2)", email, password_hash
        )
    finally:
        await conn.close()


def test_logout_reaches_the_other_replica_with_and_without_redis(
    replicas: list[str], redis: Redis, migrated_db: str
) -> None:
    first, second = replicas
    email = f"replica-{secrets.token_hex(4)}@example.com"
    password = "replicated passphrase " + secrets.token_hex(4)
    digest = PasswordHasher(time_cost=1, memory_cost=1024).hash(password)
    asyncio.run(insert_user(migrated_db, email, digest))

    for redis_up in (True, False):
        if not redis_up:
            redis.kill()
        token = login(first, email, password)
        headers = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{second}/v1/users/me", headers=headers).status_code == 200
        assert httpx.post(f"{first}/v1/auth/logout", headers=headers).status_code == 204
        assert seconds_until_refused(second, token) < 1.0, f"redis up: {redis_up}"
        assert httpx.get(f"{first}/v1/users/me", headers=headers).status_code == 401
