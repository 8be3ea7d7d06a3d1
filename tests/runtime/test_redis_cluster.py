"""hotpath on a Redis Cluster (REDIS_URL=redis+cluster://...): a real one of the test's own,
three masters with a replica each (tests/fixtures/redis_cluster.py).

The limiter's script and the product cache's run on keys spread over every shard; the fan-out
uses sharded pub/sub, whose channel lives on one shard, so every subscriber hears one order;
two real server processes keep answering through a master killed under them: their limits fall
back to local shares and come back after the failover, and a logout still reaches the other
process within a second, through the PostgreSQL poll while the channel's shard is gone."""

from __future__ import annotations

import asyncio
import functools
import io
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

import server
from server.catalog.cache import CachedProduct, ProductCache
from server.db.devdb import database_name
from server.ratelimit.gcra import RedisGcra
from server.ratelimit.policy import Policy
from server.runtime.pubsub import follow_channel, publish
from server.runtime.redis_client import RedisClient, parse_cluster_url
from server.runtime.redis_link import RedisLink, open_redis
from server.runtime.settings import Settings, SettingsError
from tests.fixtures.redis_cluster import ThrowawayRedisCluster, redis_cluster
from tests.fixtures.servers import login, running_servers, seconds_until_refused
from tests.fixtures.support import until
from tests.fixtures.users import insert_user

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayRedisCluster]:
    with redis_cluster(masters=3, replicas=1) as running:
        yield running


@pytest.fixture
async def link(
    cluster: ThrowawayRedisCluster, logger: FilteringBoundLogger
) -> AsyncIterator[RedisLink]:
    async with open_redis(cluster.url, timeout=1.0, logger=logger) as opened:
        assert opened.client is not None
        assert opened.cluster
        yield opened


def test_cluster_urls_are_parsed_and_bad_ones_reported_without_the_password() -> None:
    address = parse_cluster_url("rediss+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001")
    assert address.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert (address.tls, address.username, address.password) == (True, "app", "s@cret")
    assert "s@cret" not in repr(address)
    assert Settings.from_env({"REDIS_URL": "redis+cluster://a:1,b:2"}).redis_url
    for bad in ("redis+cluster://u:hunter22@a:1,b", "redis+cluster://u:hunter22@a:1/3"):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"REDIS_URL": bad})
        (problem,) = caught.value.problems
        assert problem.startswith("REDIS_URL"), problem
        assert "hunter22" not in str(caught.value)


def test_every_lua_script_touches_one_key() -> None:
    """What makes a script cluster-safe without hash tags: it names KEYS[1] and no other key
    (the one the client routes by)."""
    scripts = 0
    for path in Path(server.__file__).parent.rglob("*.py"):
        text = path.read_text()
        if "redis.call(" not in text:
            continue
        scripts += 1
        assert set(re.findall(r"KEYS\[\w+\]", text)) == {"KEYS[1]"}, path
    assert scripts >= 2  # the limiter's and the product cache's


async def test_the_limiter_script_runs_on_every_shard(
    link: RedisLink, cluster: ThrowawayRedisCluster
) -> None:
    assert link.client is not None
    gcra, policy = RedisGcra(), Policy("read", 3, 60.0)
    keys = [f"hotpath:test-{secrets.token_hex(3)}:ratelimit:read:user:{n}" for n in range(12)]
    assert len({cluster.master_of(key) for key in keys}) == 3  # the keys span the shards
    for key in keys:
        granted = [(await gcra.take(link.client, key, policy, 2)).granted for _ in range(3)]
        assert granted == [2, 1, 0], key  # one bucket per key, whichever shard holds it


class Row:
    """Stands in for PostgreSQL: one product whose version the test moves."""

    def __init__(self, product_id: int) -> None:
        self.product_id, self.version, self.loads = product_id, 1, 0

    async def load(self) -> CachedProduct:
        self.loads += 1
        body = orjson.dumps({"id": self.product_id, "version": self.version})
        return CachedProduct(self.version, f'"{self.version}"', body)


async def version_soon(cache: ProductCache, row: Row, wanted: int, limit: float = 5) -> int:
    deadline = time.monotonic() + limit
    while True:
        found = await cache.get(row.product_id, row.load)
        assert found is not None
        if found.version == wanted or time.monotonic() > deadline:
            return found.version
        await asyncio.sleep(0.02)


async def test_product_cache_invalidation_reaches_the_other_replica(
    cluster: ThrowawayRedisCluster, logger: FilteringBoundLogger
) -> None:
    """Two caches (two replicas) on one namespace: a read fills Redis, the other replica is
    served from it; an invalidation drops the other's copy, and each cache's heartbeats come
    back on the sharded channel, so both follow (long-lived copies allowed)."""
    namespace = f"hotpath:test-{secrets.token_hex(3)}"
    caches: list[ProductCache] = []
    async with (
        open_redis(cluster.url, timeout=1.0, logger=logger) as one,
        open_redis(cluster.url, timeout=1.0, logger=logger) as other,
    ):
        for redis in (one, other):
            cache = ProductCache(redis, logger, namespace=namespace, registry=CollectorRegistry())
            await cache.start()
            caches.append(cache)
        try:
            await until(lambda: all(cache.following for cache in caches), limit=10)
            rows = [Row(n) for n in range(1, 7)]  # product keys on several shards
            for row in rows:
                assert (await caches[0].get(row.product_id, row.load)) is not None
                assert (await caches[1].get(row.product_id, row.load)) is not None
                assert row.loads == 1  # the second replica read Redis, not PostgreSQL
            for row in rows:
                row.version = 2
                await caches[0].invalidate(row.product_id, 2)
            # Without the invalidation the other's copy would live its followed TTL (30 s).
            for row in rows:
                assert await version_soon(caches[1], row, 2) == 2
        finally:
            for cache in caches:
                await cache.stop()


async def test_fan_out_is_sharded_and_every_subscriber_hears_one_order(
    cluster: ThrowawayRedisCluster, logger: FilteringBoundLogger
) -> None:
    channel = f"hotpath:test-{secrets.token_hex(3)}:revocations"
    heard: list[list[object]] = [[], []]
    up = [False, False]
    async with (
        open_redis(cluster.url, timeout=1.0, logger=logger) as first,
        open_redis(cluster.url, timeout=1.0, logger=logger) as second,
        open_redis(cluster.url, timeout=1.0, logger=logger) as publisher,
    ):
        followers = [
            asyncio.create_task(
                follow_channel(
                    link,
                    channel,
                    on_message=heard[n].append,
                    on_subscribed=functools.partial(up.__setitem__, n),
                    logger=logger,
                    event="test",
                )
            )
            for n, link in enumerate((first, second))
        ]
        try:
            await until(lambda: all(up), limit=10)
            # Both subscriptions sit on the channel's shard, as sharded subscriptions.
            owner = cluster.master_of(channel)
            assert cluster.cli(owner, "pubsub", "shardnumsub", channel).split() == [channel, "2"]
            assert cluster.cli(owner, "pubsub", "numsub", channel).split() == [channel, "0"]
            clients = [first.client, publisher.client]

            async def send(name: str, client: RedisClient | None) -> None:
                assert client is not None
                for n in range(50):
                    await publish(client, channel, f"{name}{n}")

            await asyncio.gather(*(send(name, c) for name, c in zip("ab", clients, strict=True)))
            await until(lambda: all(len(h) == 100 for h in heard), limit=10)
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    assert heard[0] == heard[1]  # one order for everyone
    for name in "ab":  # and each publisher's own order kept
        assert [m for m in heard[0] if str(m).startswith(name)] == [f"{name}{n}" for n in range(50)]


async def test_the_probe_finds_a_healed_cluster_again(
    logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    """A cluster of its own, a master killed and failed over, and nothing but probes on the
    link: coredis' client would go on sending PING to the dead master, so the link opens a new
    client, which finds the new topology, and the probe answers again."""
    with redis_cluster(masters=3, replicas=1) as own:
        async with open_redis(own.url, timeout=1.0, logger=logger) as link:
            assert await link.ping()
            own.kill(own.master_of("anything"))
            await asyncio.to_thread(own.wait_healthy)
            deadline = time.monotonic() + 20
            while not await link.ping():
                assert time.monotonic() < deadline, "the probe never answered again"
                await asyncio.sleep(0.2)
    assert b"redis_rediscovering" in log_stream.getvalue()


async def test_a_tls_cluster_is_reached_with_its_ca_and_only_with_it(
    logger: FilteringBoundLogger,
) -> None:
    """rediss+cluster:// against a cluster speaking only TLS (a throwaway CA): the limiter's
    script and a sharded message go through; without the CA the certificate is refused."""
    with redis_cluster(masters=3, replicas=0, tls=True) as own:
        assert own.url.startswith("rediss+cluster://")
        untrusted = own.url.split("?")[0]  # the system's CAs do not know the throwaway one
        async with open_redis(untrusted, timeout=1.0, logger=logger) as refused:
            assert refused.client is None
        async with open_redis(own.url, timeout=1.0, logger=logger) as link:
            assert link.client is not None
            grant = await RedisGcra().take(link.client, "tls:ratelimit:k", Policy("r", 2, 60.0), 3)
            assert grant.granted == 2
            heard: list[object] = []
            up = [False]
            follower = asyncio.create_task(
                follow_channel(
                    link,
                    "tls:channel",
                    on_message=heard.append,
                    on_subscribed=functools.partial(up.__setitem__, 0),
                    logger=logger,
                    event="test",
                )
            )
            try:
                await until(lambda: up[0], limit=10)
                await publish(link.client, "tls:channel", "over tls")
                await until(lambda: heard == ["over tls"], limit=10)
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)


_FALLBACK = re.compile(r"^hotpath_rate_limit_fallback_active (\S+)$", re.MULTILINE)


def fallback_active(base: str) -> bool:
    found = _FALLBACK.search(httpx.get(f"{base}/metrics").text)
    assert found is not None
    return float(found.group(1)) == 1.0


def logout_reaches(first: str, second: str, email: str, password: str) -> float:
    token = login(first, email, password)
    headers = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{second}/v1/users/me", headers=headers).status_code == 200
    assert httpx.post(f"{first}/v1/auth/logout", headers=headers).status_code == 204
    return seconds_until_refused(second, token)


def test_two_servers_ride_out_a_killed_master(
    cluster: ThrowawayRedisCluster, migrated_db: str, tmp_path: Path
) -> None:
    namespace = f"hotpath:{database_name(migrated_db)}"
    channel = f"{namespace}:revocations"
    doomed = cluster.master_of(channel)
    # A user whose read budget lives on the same shard: its limits must fall back with it.
    while True:
        user_id, email, password = asyncio.run(insert_user(migrated_db))
        if cluster.master_of(f"{namespace}:ratelimit:read:user:{user_id}") == doomed:
            break
    env = {"HOTPATH_RATE_LIMITS": "true", "HOTPATH_RATE_LIMIT_REPLICAS": "2"}
    with running_servers(
        2, database_url=migrated_db, redis_url=cluster.url, data_dir=tmp_path, extra_env=env
    ) as (first, second):
        assert logout_reaches(first, second, email, password) < 1.0  # sharded pub/sub
        headers = {"authorization": f"Bearer {login(first, email, password)}"}
        assert httpx.get(f"{first}/v1/users/me", headers=headers).status_code == 200
        assert not fallback_active(first)

        cluster.kill(doomed)
        # The revocation channel's shard is gone: the PostgreSQL poll carries the logout.
        assert logout_reaches(first, second, email, password) < 1.0
        # Every request is still answered; the limiter falls back to its local share.
        statuses = set()
        deadline = time.monotonic() + 10
        while not fallback_active(first) and time.monotonic() < deadline:
            statuses.add(httpx.get(f"{first}/v1/users/me", headers=headers).status_code)
            time.sleep(0.05)
        assert fallback_active(first)
        assert statuses <= {200}, statuses

        cluster.wait_healthy()  # the replica took over the dead master's slots
        deadline = time.monotonic() + 20
        while fallback_active(first) and time.monotonic() < deadline:
            statuses.add(httpx.get(f"{first}/v1/users/me", headers=headers).status_code)
            time.sleep(0.1)
        assert not fallback_active(first)  # back on the shared limit by itself
        assert statuses <= {200}, statuses
        assert logout_reaches(first, second, email, password) < 1.0
        # Ready again on its own: the readiness probe's Redis check follows the failover.
        for base in (first, second):
            deadline = time.monotonic() + 20
            while httpx.get(f"{base}/readyz").status_code != 200:
                assert time.monotonic() < deadline, httpx.get(f"{base}/readyz").text
                time.sleep(0.2)
