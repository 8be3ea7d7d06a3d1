"""`make run` with no PostgreSQL answering: an embedded one is started, migrated and seeded."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from server.commands.tasks import prepare
from server.db.embedded_pg import embedded_dsn, stop_embedded
from server.db.migrate import load_migrations
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from tests.fixtures.support import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def devdata() -> Iterator[Path]:
    # Outside pytest's tmp dir: as root, pgserver opens up the permissions of every parent.
    base = Path(tempfile.mkdtemp(prefix="hotpath-embedded-run-"))
    try:
        yield base / ".devdata"
    finally:
        stop_embedded(base / ".devdata" / "postgres")
        shutil.rmtree(base, ignore_errors=True)


async def test_prepare_falls_back_to_embedded_postgres(
    devdata: Path, logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    nobody_home = f"postgresql://postgres@127.0.0.1:{free_port()}/hotpath"
    settings = Settings(
        env="development",
        database_url=nobody_home,
        database_url_explicit=False,
        secret_key="k" * 40,
        data_dir=devdata,
        embedded_db=True,
        db_connect_timeout=0.5,
    )
    prepared = await prepare(settings, logger, users=10)
    assert prepared.database_url != nobody_home
    conn = await asyncpg.connect(prepared.database_url)
    try:
        assert (await conn.fetchval("SHOW server_version")).startswith("18")
        assert await conn.fetchval("SELECT count(*) FROM users") == 13
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert applied == len(load_migrations(MIGRATIONS_DIR))
    finally:
        await conn.close()
    events = [orjson.loads(line)["message"] for line in log_stream.getvalue().splitlines()]
    assert "embedded_postgres_started" in events
    # A second `make run` reuses the same cluster and leaves the data alone.
    again = await prepare(settings, logger, users=10)
    assert again.database_url == prepared.database_url
    conn = await asyncpg.connect(again.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 13
    finally:
        await conn.close()


def make_stop(devdata: Path) -> None:
    """What `make stop` runs (its stamp counted as current: no install inside a test), run."""
    dry_run = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed-stamp", "stop"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    command = dry_run.stdout.strip().split()
    assert command[1:] == ["-m", "server.db.embedded_pg", "stop"], dry_run.stdout
    subprocess.run(
        [sys.executable, *command[1:]],
        cwd=REPO,
        env={**os.environ, "HOTPATH_DATA_DIR": str(devdata)},
        check=True,
        timeout=120,
    )


async def test_make_stop_stops_the_embedded_postgres_make_run_left_running(
    devdata: Path, logger: FilteringBoundLogger
) -> None:
    settings = Settings(
        env="development",
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/hotpath",
        database_url_explicit=False,
        secret_key="k" * 40,
        data_dir=devdata,
        embedded_db=True,
        db_connect_timeout=0.5,
    )
    await prepare(settings, logger, users=0, products=0)
    # The server is gone (prepare is all of make run that touches PostgreSQL); the cluster
    # is not: that is what make stop is for.
    assert embedded_dsn(devdata / "postgres") is not None
    await asyncio.to_thread(make_stop, devdata)
    assert embedded_dsn(devdata / "postgres") is None


async def test_an_explicit_database_url_never_falls_back(
    devdata: Path, logger: FilteringBoundLogger
) -> None:
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/hotpath",
        database_url_explicit=True,
        secret_key="k" * 40,
        data_dir=devdata,
        db_connect_timeout=0.5,
    )
    with pytest.raises(SystemExit, match="not answering"):
        await prepare(settings, logger, users=0)
    assert not (devdata / "postgres").exists()
