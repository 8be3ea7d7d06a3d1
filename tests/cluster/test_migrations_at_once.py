"""Every replica migrates as it starts (an init container's way), all at once, on an empty
database: one applies the migrations, the others find them applied, and all serve. This
cluster is the command's own test too: its banner, and a stop that leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from server.runtime.paths import MIGRATIONS_DIR
from tests.cluster.conftest import LocalCluster, local_cluster, read_json_lines
from tests.fixtures.support import ThrowawayRedis

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def migrating(empty_db: str, tmp_path: Path) -> Iterator[LocalCluster]:
    redis = ThrowawayRedis()
    redis.start()
    try:
        with local_cluster(
            database_url=empty_db, redis_url=redis.url, run_dir=tmp_path, migrate=True
        ) as cluster:
            yield cluster
    finally:
        redis.kill()


async def applied_versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()


async def test_replicas_migrating_at_once_on_an_empty_database_all_serve(
    migrating: LocalCluster, empty_db: str
) -> None:
    replicas = migrating.replicas()
    runs = {
        replica["index"]: [
            line["applied"]
            for line in read_json_lines(Path(replica["log"]))
            if line.get("message") == "migrations_current"
        ]
        for replica in replicas
    }
    assert all(len(run) == 1 for run in runs.values()), runs
    names = sorted(path.name for path in MIGRATIONS_DIR.glob("*.sql"))
    applied = sorted((run[0] for run in runs.values()), key=len)
    assert applied == [[], [], names], f"what each replica applied: {runs}"
    versions = await applied_versions(empty_db)
    assert len(versions) == len(set(versions)) == len(names), f"schema_migrations: {versions}"

    async with httpx.AsyncClient(timeout=5) as http:
        for replica in replicas:
            ready = await http.get(replica["url"] + "/readyz")
            assert ready.status_code == 200, (replica["index"], ready.text)
            assert ready.json()["checks"]["migrations"] == "current"
        for _ in range(6):
            assert (await http.get(migrating.url + "/v1/products?limit=1")).status_code == 200

    banner = migrating.output
    assert f"behind nginx on {migrating.url}" in banner, banner
    for replica in replicas:
        assert f"replica {replica['index']}   {replica['url']}" in banner, banner
    assert migrating.state()["prometheus"]["url"] in banner, banner
