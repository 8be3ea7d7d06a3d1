"""An API key revoked on one replica (a separate server process) is refused by another within a
second: through Redis pub/sub and, with Redis killed, through the PostgreSQL poll."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from tests.fixtures.servers import Redis, running_servers

pytestmark = pytest.mark.slow


@pytest.fixture
def two_replicas(
    migrated_db: str, throwaway_redis: Redis, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    with running_servers(
        2, database_url=migrated_db, redis_url=throwaway_redis.url, data_dir=tmp_path
    ) as bases:
        yield bases[0], bases[1]


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


def admin_session(base: str, dsn: str) -> dict[str, str]:
    """A new admin, logged in on ``base``: the headers of its session."""
    email = f"key-replica-{secrets.token_hex(4)}@example.com"
    password = "replicated passphrase " + secrets.token_hex(4)
    digest = PasswordHasher(time_cost=1, memory_cost=1024).hash(password)
    asyncio.run(insert_admin(dsn, email, digest))
    login = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"authorization": f"Bearer {login.json()['access_token']}"}


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
    session = admin_session(first, migrated_db)

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


GRACE = 2


@pytest.fixture
def two_replicas_short_grace(
    migrated_db: str, throwaway_redis: Redis, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    with running_servers(
        2,
        database_url=migrated_db,
        redis_url=throwaway_redis.url,
        data_dir=tmp_path,
        extra_env={"HOTPATH_APIKEY_ROTATION_GRACE_SECONDS": str(GRACE)},
    ) as bases:
        yield bases[0], bases[1]


def test_a_rotated_secret_cached_by_another_replica_ends_with_the_grace_period(
    two_replicas_short_grace: tuple[str, str], migrated_db: str
) -> None:
    first, second = two_replicas_short_grace
    session = admin_session(first, migrated_db)
    created = httpx.post(
        f"{first}/v1/api-keys", json={"name": "rotated", "scopes": []}, headers=session
    )
    assert created.status_code == 201, created.text
    old, key_id = created.json()["key"], created.json()["id"]
    assert status_with_key(second, old) == 200  # cached there for a minute

    rotated = httpx.post(f"{first}/v1/api-keys/{key_id}/rotate", headers=session)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["key"]
    assert status_with_key(second, new) == 200
    # The other replica keeps the old secret for the grace period, not its cache lifetime
    # (a minute): the rotation reached it and it looked the key up again.
    elapsed = seconds_until_refused(second, old, limit=GRACE + 3.0)
    assert GRACE - 0.5 < elapsed < GRACE + 1.0, elapsed
    assert status_with_key(second, new) == 200
