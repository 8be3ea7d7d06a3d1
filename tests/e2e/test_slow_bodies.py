"""Clients that announce a body and never send it, against the real server (granian).

Before the body limit read bodies outside the in-flight cap, 512 such connections took every
slot and every other client got 503 for as long as they waited. Here hundreds of them, from
several loopback addresses, hold their connections while ordinary requests keep answering;
each is then answered 408 and its connection closed.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.databases import REDIS_URL
from tests.fixtures.servers import running_servers

pytestmark = pytest.mark.slow

BODY_TIMEOUT = 4.0
PER_CLIENT = 60
# Each address announces a body on more connections than its budget allows.
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
PER_ADDRESS = PER_CLIENT + 5
ROUTES = ("/v1/auth/login", "/v1/orders", "/v1/auth/register")


@pytest.fixture
def server(migrated_db: str, tmp_path: Path) -> Iterator[str]:
    env = {
        # Far fewer slots than silent clients: before the fix this server was out of slots.
        "HOTPATH_MAX_IN_FLIGHT": "16",
        "HOTPATH_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "HOTPATH_MAX_BODY_READERS_PER_CLIENT": str(PER_CLIENT),
    }
    with running_servers(
        1, database_url=migrated_db, redis_url=REDIS_URL, data_dir=tmp_path, extra_env=env
    ) as (base,):
        yield base


def announce_body(port: int, address: str, path: str) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address, 0))
    conn.sendall(
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        "Content-Length: 300\r\n\r\n".encode()
    )
    return conn


def read_answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_hundreds_of_silent_bodies_leave_reads_and_writes_answering(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        for address in ADDRESSES:
            for index in range(PER_ADDRESS):
                held.append(announce_body(port, address, ROUTES[index % len(ROUTES)]))
        opened = time.monotonic()

        with httpx.Client(base_url=server, timeout=5) as http:
            # Every read answers, many more than the 16 slots, while the bodies are awaited.
            for _ in range(3):
                statuses = {http.get("/v1/products?limit=5").status_code for _ in range(40)}
                assert statuses == {200}
            # A write with its body is admitted too: bad credentials, not 503.
            login = http.post(
                "/v1/auth/login",
                json={"email": f"nobody-{secrets.token_hex(4)}@example.com", "password": "x" * 12},
            )
            assert login.status_code == 401, login.text
            assert http.get("/readyz").status_code == 200
        assert time.monotonic() - opened < BODY_TIMEOUT, "the checks must run while held"

        answers = [read_answer(conn) for conn in held]
        waited = time.monotonic() - opened
    finally:
        for conn in held:
            conn.close()

    status_lines = [answer.split(b"\r\n", 1)[0] for answer in answers]
    timeouts = sum(line.startswith(b"HTTP/1.1 408") for line in status_lines)
    busy = sum(line.startswith(b"HTTP/1.1 503") for line in status_lines)
    # Per address, the budget's worth waited for their bodies and were cut off with a 408
    # (the connection then closed: read_answer returned); the rest were refused at once.
    assert timeouts == PER_CLIENT * len(ADDRESSES), status_lines[:5]
    assert busy == (PER_ADDRESS - PER_CLIENT) * len(ADDRESSES)
    assert all(b"retry-after: 1" in answer.lower() for answer in answers if b" 503 " in answer)
    assert all(b"application/problem+json" in answer for answer in answers)
    assert BODY_TIMEOUT - 0.5 <= waited < BODY_TIMEOUT + 10
