"""A product change on one server process reaches another process's cached copy within 1 s,
with Redis up (pub/sub), after Redis is killed (the local TTL bounds it) and while it is
stalled (the cache's heartbeat stops coming back)."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fixtures.faults import signal_redis
from tests.fixtures.servers import Redis, create_product, login
from tests.fixtures.users import insert_user

pytestmark = pytest.mark.slow


def seconds_until_name(base: str, product_id: int, name: str, limit: float = 3.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if httpx.get(f"{base}/v1/products/{product_id}").json()["name"] == name:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"the other process still served the old copy after {limit} s")


def moment_named(base: str, product_id: int, name: str) -> float:
    """The wall-clock time at which ``base`` first served the product under ``name``."""
    seconds_until_name(base, product_id, name)
    return time.time()


def staff_and_product(first: str, migrated_db: str) -> tuple[dict[str, str], int, str]:
    """A staff member's headers, and a product ("Before") they created: its id and ETag."""
    _, email, password = asyncio.run(insert_user(migrated_db, "staff"))
    headers = {"authorization": f"Bearer {login(first, email, password)}"}
    created = create_product(first, headers, name="Before")
    return headers, created.json()["id"], created.headers["etag"]


def test_an_update_reaches_the_other_process_cache(
    replicas: list[str], redis: Redis, migrated_db: str
) -> None:
    first, second = replicas
    headers, product_id, etag = staff_and_product(first, migrated_db)
    for round_, redis_up in enumerate((True, False)):
        if not redis_up:
            redis.kill()
        # The other process caches the current copy first.
        assert httpx.get(f"{second}/v1/products/{product_id}").status_code == 200
        name = f"After {round_}"
        changed = httpx.patch(
            f"{first}/v1/products/{product_id}",
            json={"name": name},
            headers={**headers, "if-match": etag},
        )
        assert changed.status_code == 200, changed.text
        etag = changed.headers["etag"]
        assert seconds_until_name(second, product_id, name) < 1.0, f"redis up: {redis_up}"


def test_an_update_reaches_the_other_process_cache_while_redis_is_stalled(
    replicas: list[str], redis: Redis, migrated_db: str
) -> None:
    # SIGSTOP sends no RST: to the second process its subscription still looks up, and its
    # copy is one it would keep for HOTPATH_PRODUCT_CACHE_SECONDS (30 s).
    first, second = replicas
    headers, product_id, etag = staff_and_product(first, migrated_db)
    path = f"/v1/products/{product_id}"
    assert httpx.get(f"{second}{path}").json()["name"] == "Before"
    signal_redis(redis, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            # Read from the second process while the write runs, and count from the write's
            # transaction (updated_at, this host's clock): neither the writer's work before it
            # nor its wait for the stalled Redis after it is staleness.
            seen = pool.submit(moment_named, second, product_id, "After")
            changed = httpx.patch(
                f"{first}{path}", json={"name": "After"}, headers={**headers, "if-match": etag}
            )
            assert changed.status_code == 200, changed.text
            written = dt.datetime.fromisoformat(changed.json()["updated_at"]).timestamp()
            seconds = seen.result() - written
    finally:
        signal_redis(redis, signal.SIGCONT)
    assert seconds < 1.0, seconds
