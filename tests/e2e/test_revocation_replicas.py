"""Revocation reaches another replica (a separate server process) within a second, through
Redis pub/sub and, with Redis killed, through the PostgreSQL poll."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.fixtures.servers import Redis, login, seconds_until_refused
from tests.fixtures.users import insert_user

pytestmark = pytest.mark.slow


def test_logout_reaches_the_other_replica_with_and_without_redis(
    replicas: list[str], redis: Redis, migrated_db: str
) -> None:
    first, second = replicas
    _, email, password = asyncio.run(insert_user(migrated_db))

    for redis_up in (True, False):
        if not redis_up:
            redis.kill()
        token = login(first, email, password)
        headers = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{second}/v1/users/me", headers=headers).status_code == 200
        assert httpx.post(f"{first}/v1/auth/logout", headers=headers).status_code == 204
        assert seconds_until_refused(second, token) < 1.0, f"redis up: {redis_up}"
        assert httpx.get(f"{first}/v1/users/me", headers=headers).status_code == 401


def test_logout_all_and_a_disable_cut_every_token_on_the_other_replica(
    replicas: list[str], migrated_db: str
) -> None:
    """The user-level cut-offs (every token issued before now), not just one session's."""
    first, second = replicas
    _, email, password = asyncio.run(insert_user(migrated_db))
    _, admin_email, admin_password = asyncio.run(insert_user(migrated_db, "admin"))
    admin = {"authorization": f"Bearer {login(first, admin_email, admin_password)}"}

    # Logout-all on the first replica: two sessions' tokens stop on the second.
    tokens = [login(first, email, password), login(second, email, password)]
    for token in tokens:
        headers = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{second}/v1/users/me", headers=headers).status_code == 200
    ended = httpx.post(
        f"{first}/v1/auth/logout-all", headers={"authorization": f"Bearer {tokens[0]}"}
    )
    assert ended.status_code == 204
    for token in tokens:
        assert seconds_until_refused(second, token) < 1.0

    # Disabled by an admin on the first replica: refused on the second within a second.
    time.sleep(
        1.02 - time.time() % 1
    )  # past the cut-off's whole second (tokens carry whole-second iat)
    token = login(second, email, password)
    user_id = httpx.get(
        f"{second}/v1/users/me", headers={"authorization": f"Bearer {token}"}
    ).json()["id"]
    disabled = httpx.patch(
        f"{first}/v1/users/{user_id}", json={"status": "disabled"}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text
    assert seconds_until_refused(second, token) < 1.0
