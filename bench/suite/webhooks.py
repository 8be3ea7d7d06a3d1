"""Webhook delivery throughput: outbox events written at once, one `python -m server worker`,
one endpoint on a loopback receiver that answers 200 at once; deliveries a second from the
worker's start until every delivery has succeeded (fan-out, claims, signing, HTTP, recording).
The receiver is an asyncio server of a few lines, so the figure is the worker's, not the
receiver's. The worker's CPU time (from /proc) gives deliveries per CPU-second too: steadier than
the rate on a shared box, where the worker gets what the other processes leave of the cores."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.suite import procs
from server.webhooks.signing import SecretBox, new_secret

ROOT = Path(__file__).resolve().parents[2]
_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def _receiver(counter: list[int]) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                counter[0] += 1
                writer.write(_ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def _measure(url: str, events: int, log: Path, timeout: float) -> dict[str, Any]:
    received = [0]
    server = await _receiver(received)
    port = server.sockets[0].getsockname()[1]
    secret_key = "bench webhook secret key " + "x" * 16
    conn = await asyncpg.connect(url)
    process: asyncio.subprocess.Process | None = None
    try:
        await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        await conn.execute(
            "INSERT INTO webhook_endpoints (url, event_types, secret_box) VALUES ($1, $2, $3)",
            f"http://127.0.0.1:{port}/hooks",
            ["order.*"],
            SecretBox(secret_key).seal(new_secret()),
        )
        await conn.execute(
            "INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload) "
            "SELECT 'order.placed', 'order', g::text, jsonb_build_object('id', g, 'total', 1299) "
            "FROM generate_series(1, $1) g",
            events,
        )
        env = {
            **os.environ,
            "HOTPATH_ENV": "test",
            "DATABASE_URL": url,
            "HOTPATH_SECRET_KEY": secret_key,
            "HOTPATH_EMBEDDED_DB": "false",
            "HOTPATH_LOG_LEVEL": "warning",
            "HOTPATH_WEBHOOK_ALLOW_HTTP": "true",
            "HOTPATH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
            "HOTPATH_WEBHOOK_POLL_SECONDS": "0.05",
            # The per-endpoint defaults (4 at once, 50 a second) would measure the rate limit.
            "HOTPATH_WEBHOOK_ENDPOINT_CONCURRENCY": "32",
            "HOTPATH_WEBHOOK_ENDPOINT_RATE": "10000",
        }
        started = time.monotonic()
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", "worker", cwd=ROOT, env=env, stderr=sink
            )
        done, cpu = 0, 0.0
        while time.monotonic() - started < timeout:
            done = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
            )
            if done >= events:
                break
            cpu = procs.cpu_seconds(process.pid)  # the last reading before it is stopped
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = procs.cpu_seconds(process.pid) or cpu
        return {
            "events": events,
            "delivered": done,
            "received": received[0],
            "seconds": round(elapsed, 2),
            "deliveries_per_second": round(done / elapsed, 1),
            "worker_cpu_seconds": round(cpu, 2),
            "deliveries_per_cpu_second": round(done / cpu, 1) if cpu else None,
            "concurrency": 32,
        }
    finally:
        if process is not None and process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        await conn.close()
        server.close()


def measure(url: str, *, events: int, log: Path, timeout: float = 300.0) -> dict[str, Any]:
    return asyncio.run(_measure(url, events, log, timeout))
