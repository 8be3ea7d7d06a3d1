"""Read replicas against a real streaming replica the test builds: a throwaway primary (initdb
on its own port) and a standby of it (pg_basebackup -R), never the shared server.

The replica set keeps a standby in rotation while it has replayed what the primary had written
``max_lag`` ago, takes it out while its replay is paused past that (or while it does not
answer), and brings it back by itself; and real servers send catalog listings and the audit
listing to it, except a signed-in user's whose latest write it has not replayed yet: those go
to the primary, whichever process of hotpath the write went through (tests/db/test_write_marks.py
tests the pieces)."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.db.database import Database, open_pool
from server.db.replica_lag import Replica, parse_lsn
from server.db.replica_pools import open_replicas
from server.db.replicas import ReplicaSet
from server.runtime.settings import Settings, SettingsError
from tests.fixtures.cluster import ThrowawayPostgres
from tests.fixtures.databases import REDIS_URL
from tests.fixtures.servers import login, running_servers
from tests.fixtures.support import until
from tests.fixtures.users import insert_user

# Two clusters made from scratch (initdb, migrations, a base backup) before the first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAX_LAG = 0.5
DATABASE = f"hotpath_replicas_{secrets.token_hex(4)}"


class Pair:
    def __init__(self, primary: ThrowawayPostgres, standby: ThrowawayPostgres, url: str) -> None:
        self.primary, self.standby = primary, standby
        self.url = url  # the test database on the primary
        self.standby_url = standby.url(DATABASE)

    async def on_standby(self, sql: str) -> object:
        conn = await asyncpg.connect(self.standby.admin_url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    primary, standby = ThrowawayPostgres(), ThrowawayPostgres()
    try:
        primary.init()
        primary.start()
        # A name of its own: Redis keys and channels are named after the database.
        url = asyncio.run(primary.create_database(DATABASE))
        env = {**os.environ, "HOTPATH_ENV": "test", "DATABASE_URL": url}
        env["HOTPATH_DATA_DIR"] = str(tmp_path_factory.mktemp("migrate"))
        subprocess.run(
            [sys.executable, "-m", "server", "migrate"], env=env, check=True, capture_output=True
        )
        standby.init_standby_of(primary)
        standby.start()
        yield Pair(primary, standby, url)
    finally:
        standby.stop()
        primary.stop()


async def until_replayed(pair: Pair) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    primary = await asyncpg.connect(pair.url)
    try:
        written = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await primary.close()
    for _ in range(200):
        replayed = await pair.on_standby("SELECT pg_last_wal_replay_lsn()::text")
        if parse_lsn(str(replayed)) >= parse_lsn(written):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the standby did not catch up")


async def rename_behind_the_api(url: str, product_id: int) -> None:
    """A change no tombstone records (so only a reader of the primary can see it)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE products SET name = 'Changed in SQL' WHERE id = $1", product_id)
    finally:
        await conn.close()


def test_replica_settings_are_read_and_checked() -> None:
    urls = "postgresql://r:secret@standby-1/hotpath, postgresql://standby-2/hotpath"
    settings = Settings.from_env({"DATABASE_REPLICA_URLS": urls, "HOTPATH_REPLICA_MAX_LAG": "2"})
    assert settings.database_replica_urls == (
        "postgresql://r:secret@standby-1/hotpath",
        "postgresql://standby-2/hotpath",
    )
    assert settings.replica_max_lag == 2.0
    assert settings.replica_signed_in_reads is True
    assert "secret" not in repr(settings)
    off = Settings.from_env({"HOTPATH_REPLICA_SIGNED_IN_READS": "false"})
    assert off.replica_signed_in_reads is False
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"DATABASE_REPLICA_URLS": "mysql://r:secret@x", "HOTPATH_REPLICA_MAX_LAG": "0"}
        )
    assert len(caught.value.problems) == 2
    assert "secret" not in str(caught.value)


def test_lsns_are_read_as_byte_positions() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def replicas(
    pair: Pair, logger: FilteringBoundLogger, registry: CollectorRegistry
) -> AsyncIterator[tuple[ReplicaSet, Database]]:
    primary = Database(await open_pool(pair.url, min_size=1, max_size=2), acquire_timeout=1.0)
    found = await open_replicas(
        primary,
        (pair.standby_url,),
        pool_max=2,
        acquire_timeout=1.0,
        command_timeout=2.0,
        connect_timeout=1.0,
        statement_cache_size=0,
        max_lag=MAX_LAG,
        logger=logger,
        registry=registry,
    )
    try:
        yield found, primary
    finally:
        await found.close()
        await primary.close()


async def checked_until(replicas: ReplicaSet, in_rotation: bool, limit: float = 20) -> None:
    """check() rounds, four a second as the app runs them, until the standby's state is this."""
    deadline = asyncio.get_running_loop().time() + limit
    while replicas.replicas[0].in_rotation != in_rotation:
        assert asyncio.get_running_loop().time() < deadline, replicas.replicas[0].reason
        await replicas.check()
        await asyncio.sleep(0.25)


async def write(primary: Database) -> None:
    async with primary.transaction() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (n int)")
        await conn.execute("INSERT INTO lag_probe SELECT generate_series(1, 100)")


async def test_a_paused_or_stopped_replica_leaves_rotation_and_comes_back(
    pair: Pair,
    replicas: tuple[ReplicaSet, Database],
    log_stream: io.BytesIO,
    registry: CollectorRegistry,
) -> None:
    found, primary = replicas

    def gauge() -> float | None:
        return registry.get_sample_value("hotpath_db_replica_in_rotation", {"replica": "0"})

    assert found.pick() is primary  # nothing checked yet: reads stay on the primary
    await checked_until(found, True)
    standby = found.pick()
    assert standby is not primary
    assert gauge() == 1
    async with standby.connection() as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is True

    # Replay paused, the primary writing on: out once it is more than MAX_LAG behind.
    await pair.on_standby("SELECT pg_wal_replay_pause()")
    try:
        for _ in range(3):
            await write(primary)
            await asyncio.sleep(MAX_LAG)
            await found.check()
        await checked_until(found, False)
        assert found.pick() is primary
        assert "lagging" in found.replicas[0].reason
        assert b"db_replica_out_of_rotation" in log_stream.getvalue()
        assert gauge() == 0
    finally:
        await pair.on_standby("SELECT pg_wal_replay_resume()")
    await checked_until(found, True)  # caught up: back by itself
    assert found.pick() is standby
    assert gauge() == 1

    # A standby that does not answer is out, and back once it does.
    pair.standby.shut_down()
    try:
        await checked_until(found, False)
        assert "unavailable" in found.replicas[0].reason
        assert found.pick() is primary
    finally:
        pair.standby.start()
    await checked_until(found, True)


def new_product(base: str, staff: dict[str, str], category: str) -> dict[str, object]:
    created = httpx.post(
        f"{base}/v1/products",
        json={
            "sku": f"rep-{secrets.token_hex(5)}",
            "name": "Replicated kettle",
            "category": category,
            "price": {"amount_minor": 900, "currency": "EUR"},
            "stock": 3,
        },
        headers=staff,
    )
    assert created.status_code == 201, created.text
    product: dict[str, object] = {**created.json(), "etag": created.headers["etag"]}
    return product


def test_reads_use_the_replica_only_where_it_cannot_be_behind_the_reader(
    pair: Pair, tmp_path: Path
) -> None:
    """With the standby's replay paused, while it is still within the allowed lag (a minute):

    - a product the staff member creates is in their own (signed-in) listing at once, from the
      primary, and not in the anonymous listing, which the standby answers;
    - a product read on a cache miss comes from the standby when Redis vouches it is current
      (a change made straight in the primary's table, which no tombstone records, is not seen),
      and from the primary once a write through the API has left a newer version in Redis."""
    _, email, password = asyncio.run(insert_user(pair.url, "staff"))
    env = {"DATABASE_REPLICA_URLS": pair.standby_url, "HOTPATH_REPLICA_MAX_LAG": "60"}
    with running_servers(
        1, database_url=pair.url, redis_url=REDIS_URL, data_dir=tmp_path, extra_env=env
    ) as (base,):
        staff = {"authorization": f"Bearer {login(base, email, password)}"}
        category = f"replica-{secrets.token_hex(4)}"

        def listed(headers: dict[str, str]) -> int:
            answer = httpx.get(
                f"{base}/v1/products", params={"category": category}, headers=headers
            )
            assert answer.status_code == 200, answer.text
            return len(answer.json()["data"])

        earlier = new_product(base, staff, f"{category}-earlier")
        asyncio.run(until_replayed(pair))
        asyncio.run(pair.on_standby("SELECT pg_wal_replay_pause()"))
        try:
            new_product(base, staff, category)
            assert listed(staff) == 1  # the writer: the primary
            assert listed({}) == 0  # anonymous: the paused standby

            path = f"{base}/v1/products/{earlier['id']}"
            asyncio.run(rename_behind_the_api(pair.url, int(str(earlier["id"]))))
            seen = httpx.get(path)
            assert seen.status_code == 200, seen.text
            assert seen.json()["name"] == "Replicated kettle"  # the standby's row
            changed = httpx.patch(
                path,
                json={"name": "Renamed kettle"},
                headers={**staff, "if-match": str(earlier["etag"])},
            )
            assert changed.status_code == 200, changed.text
            for headers in ({}, staff):  # the standby lacks version 2: the primary answers
                again = httpx.get(path, headers=headers)
                assert again.status_code == 200, again.text
                assert again.json()["name"] == "Renamed kettle"
        finally:
            asyncio.run(pair.on_standby("SELECT pg_wal_replay_resume()"))

        async def replayed() -> None:
            await until(lambda: listed({}) == 1, limit=10)

        asyncio.run(replayed())


def routed(base: str, target: str, reason: str) -> float:
    """hotpath_db_lag_tolerant_reads_total{target, reason} of one server process."""
    answer = httpx.get(f"{base}/metrics")
    assert answer.status_code == 200, answer.text
    for line in answer.text.splitlines():
        if (
            line.startswith("hotpath_db_lag_tolerant_reads_total{")
            and f'target="{target}"' in line
            and f'reason="{reason}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_signed_in_user_reads_their_own_writes_and_others_read_the_replica(
    pair: Pair, tmp_path: Path
) -> None:
    """Two server processes on one Redis, the standby's replay paused (within the allowed lag):

    - a staff member who creates a product through one process lists it, and its audit event,
      through the other at once: their write's WAL position, kept in Redis, is past the
      standby's, so their reads go to the primary;
    - another staff member, signed in before the pause, gets the standby's older state in the
      same two lists (neither the product nor its event), as does an anonymous listing;
    - signing in during the pause is a write too: that user's audit list shows it;
    - once the standby has replayed the write, the writer's reads go to it again."""
    _, writer_email, writer_password = asyncio.run(insert_user(pair.url, "staff"))
    _, other_email, other_password = asyncio.run(insert_user(pair.url, "staff"))
    late_id, late_email, late_password = asyncio.run(insert_user(pair.url, "staff"))
    env = {"DATABASE_REPLICA_URLS": pair.standby_url, "HOTPATH_REPLICA_MAX_LAG": "60"}
    with running_servers(
        2, database_url=pair.url, redis_url=REDIS_URL, data_dir=tmp_path, extra_env=env
    ) as (one, two):
        writer = {"authorization": f"Bearer {login(one, writer_email, writer_password)}"}
        other = {"authorization": f"Bearer {login(one, other_email, other_password)}"}
        category = f"own-writes-{secrets.token_hex(4)}"

        def listed(base: str, headers: dict[str, str]) -> int:
            answer = httpx.get(
                f"{base}/v1/products", params={"category": category}, headers=headers
            )
            assert answer.status_code == 200, answer.text
            return len(answer.json()["data"])

        def audited(base: str, headers: dict[str, str], **query: str | int) -> list[str]:
            answer = httpx.get(f"{base}/v1/audit-events", params=query, headers=headers)
            assert answer.status_code == 200, answer.text
            return [event["action"] for event in answer.json()["data"]]

        def from_the_replica(headers: dict[str, str]) -> bool:
            before = routed(two, "replica", "in_rotation")
            listed(two, headers)
            return routed(two, "replica", "in_rotation") > before

        async def settled() -> None:
            # The standby has replayed both sign-ins, and process two's checks have seen it.
            await until_replayed(pair)
            await until(lambda: from_the_replica(writer) and from_the_replica(other), limit=10)

        asyncio.run(settled())
        asyncio.run(pair.on_standby("SELECT pg_wal_replay_pause()"))
        try:
            product = new_product(one, writer, category)
            behind = routed(two, "primary", "behind_reader")
            assert listed(two, writer) == 1  # the writer: the primary
            assert audited(two, writer, target_type="product", target_id=str(product["id"])) == [
                "product.created"
            ]
            assert routed(two, "primary", "behind_reader") == behind + 2
            assert listed(two, other) == 0  # someone else: the paused standby
            assert audited(two, other, target_type="product", target_id=str(product["id"])) == []
            assert listed(two, {}) == 0

            late = {"authorization": f"Bearer {login(one, late_email, late_password)}"}
            assert "auth.login" in audited(two, late, actor_id=late_id, action="auth.login")
        finally:
            asyncio.run(pair.on_standby("SELECT pg_wal_replay_resume()"))

        async def replayed() -> None:
            await until_replayed(pair)
            await until(lambda: from_the_replica(writer), limit=10)

        asyncio.run(replayed())
        assert listed(two, other) == 1


class FakeDatabase:
    """Unit-test stand-in for a Database: answers the one LSN query with ``lsn()``."""

    def __init__(self, lsn: Callable[[], int]) -> None:
        self.lsn = lsn
        self.pool = self  # for the housekeeping the checks do

    def retire_idle(self) -> int:
        return 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeDatabase]:
        yield self

    async def fetchval(self, query: str) -> str:
        assert "lsn()::text" in query
        value = self.lsn()
        return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


async def test_a_replica_may_lag_the_whole_allowed_minute(logger: FilteringBoundLogger) -> None:
    """Lag is judged against the primary's position max_lag ago, kept for the largest lag the
    settings allow: a standby 59 s behind a primary that writes all along is in rotation, one
    61 s behind is not."""
    now = [0.0]
    replayed = [0]
    primary = FakeDatabase(lambda: int(now[0] * 1000))  # a thousand bytes of WAL a second
    standby = FakeDatabase(lambda: replayed[0])
    found = ReplicaSet(
        primary,  # type: ignore[arg-type]
        [Replica("0", standby)],  # type: ignore[arg-type]
        max_lag=60.0,
        logger=logger,
        registry=None,
        clock=lambda: now[0],
    )
    for behind, in_rotation in ((59.0, True), (61.0, False)):
        found.lag.samples.clear()
        for step in range(4 * 70):  # 70 s of checks, four a second
            now[0] = step / 4
            replayed[0] = int(max(0.0, now[0] - behind) * 1000)
            await found.check()
        assert found.replicas[0].in_rotation is in_rotation, (behind, found.replicas[0].reason)
