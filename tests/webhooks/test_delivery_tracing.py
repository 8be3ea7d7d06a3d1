"""From a webhook delivery to the request that caused it and back, with tracing on, against a
real OTLP/HTTP receiver on loopback: a served process (python -m server serve) creates a product
for a request that brings a W3C traceparent; a worker process (python -m server worker)
delivers the product.created event, the first attempt answered 500, the retry 200.

- The event row keeps the request's server span as its traceparent.
- The worker's fan-out ("process outbox", CONSUMER) and each attempt's span ("POST", CLIENT)
  are roots of traces of their own, each linked to the request's server span; the fan-out's
  SQL statements are its children.
- Each webhook request's own traceparent names its attempt's span, not the request's.
- The worker's log line for the failed attempt names the attempt's span as ``trace.id`` /
  ``span.id`` and the request's as ``origin.trace.id``/``origin.span.id``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from tests.fixtures.otlp import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_SERVER,
    ReceivedSpan,
    otlp_receiver,
)
from tests.fixtures.servers import Redis, create_product, login, running_servers, stop_process
from tests.fixtures.users import insert_user
from tests.fixtures.webhook_worker import own_webhooks_db
from tests.fixtures.webhooks import Receiver, running_receiver

__all__ = ["own_webhooks_db"]  # the fixture migrated_db

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = secrets.token_hex(16)
CALLER_SPAN = secrets.token_hex(8)
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
WEBHOOKS_ENV = {
    "HOTPATH_WEBHOOK_ALLOW_HTTP": "true",
    "HOTPATH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
}


@contextmanager
def worker_process(database_url: str, data_dir: Path, env: dict[str, str]) -> Iterator[Path]:
    """``python -m server worker``; yields the file its stdout (the log lines) goes to, complete
    once the block has ended (SIGTERM: it stops, flushing its logs and spans)."""
    log = data_dir / "worker.log"
    environment = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "HOTPATH_ENV": "test",
        "DATABASE_URL": database_url,
        "HOTPATH_DATA_DIR": str(data_dir),
        "HOTPATH_EMBEDDED_DB": "false",
        "HOTPATH_LOG_LEVEL": "info",
        "HOTPATH_WEBHOOK_POLL_SECONDS": "0.05",
        "HOTPATH_WEBHOOK_TIMEOUT": "2",
        "HOTPATH_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        **env,
    }
    with log.open("wb") as out, (data_dir / "worker.err").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "worker"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=err,
        )
        try:
            yield log
        finally:
            stop_process(process)


def wait_until(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_delivery_links_to_the_request_whose_event_it_delivers(
    migrated_db: str, redis: Redis, tmp_path: Path
) -> None:
    answers = Receiver(answer=lambda n: 500 if n == 0 else 200)
    with otlp_receiver() as otlp, running_receiver(answers) as hooks:
        env = {
            **WEBHOOKS_ENV,
            "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),  # the worker opens the secret
            "HOTPATH_OTEL_ENDPOINT": otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the batch goes within 0.1 s, not 5
        }
        with running_servers(
            1, database_url=migrated_db, redis_url=redis.url, data_dir=tmp_path, extra_env=env
        ) as (base,):
            _, email, password = asyncio.run(insert_user(migrated_db, "admin"))
            auth = {"authorization": f"Bearer {login(base, email, password)}"}
            hook = httpx.post(
                f"{base}/v1/webhooks",
                json={"url": hooks.url, "event_types": ["product.created"]},
                headers=auth,
            )
            assert hook.status_code == 201, hook.text
            hooks.secrets.append(hook.json()["secret"])
            created = create_product(base, {**auth, "traceparent": TRACEPARENT}, name="Traced")
            with worker_process(migrated_db, tmp_path, env) as worker_log:
                wait_until(lambda: [r.status for r in hooks.received] == [500, 200])

                def complete(spans: list[ReceivedSpan]) -> bool:
                    return (
                        len(deliveries(spans)) == 2
                        and bool(fan_outs(spans))
                        and any(
                            s.kind == SPAN_KIND_SERVER and s.trace_id == TRACE_ID for s in spans
                        )
                    )

                spans = otlp.wait_for(complete)
    stored = asyncio.run(stored_traceparent(migrated_db, created.json()["id"]))

    (server,) = [s for s in spans if s.kind == SPAN_KIND_SERVER and s.trace_id == TRACE_ID]
    assert server.name == "POST /v1/products"
    assert server.parent_span_id == CALLER_SPAN
    origin = (TRACE_ID, server.span_id)
    # The event keeps the server span (tracing on), not the caller's span.
    assert stored is not None
    version, trace_id, span_id, flags = stored.split("-")
    assert (version, trace_id, span_id) == ("00", *origin)
    assert int(flags, 16) & 1

    (fan_out,) = [s for s in fan_outs(spans) if origin in s.links]
    assert fan_out.trace_id != TRACE_ID
    assert fan_out.parent_span_id == ""  # a root: linked, not a child
    assert fan_out.attributes["messaging.operation.type"] == "process"
    children = [s.name for s in spans if s.parent_span_id == fan_out.span_id]
    assert "create_webhook_deliveries" in children
    assert "update_outbox_published" in children

    attempts = deliveries(spans)
    for attempt in attempts:
        assert attempt.links == (origin,)  # a link to the request, not its parent
        assert attempt.trace_id != TRACE_ID
        assert attempt.parent_span_id == ""
        assert attempt.attributes["server.port"] == hooks.port
    assert len({a.trace_id for a in attempts}) == 2  # every attempt a trace of its own
    by_status = {a.attributes["http.response.status_code"]: a for a in attempts}
    assert set(by_status) == {500, 200}
    for received in hooks.received:
        _, trace_id, parent_id, _ = received.headers["traceparent"].split("-")
        assert (trace_id, parent_id) == (
            by_status[received.status].trace_id,
            by_status[received.status].span_id,
        )

    lines = [orjson.loads(line) for line in worker_log.read_bytes().splitlines() if line.strip()]
    (failed,) = [line for line in lines if line["message"] == "webhook_attempt_failed"]
    assert (failed["trace.id"], failed["span.id"]) == (
        by_status[500].trace_id,
        by_status[500].span_id,
    )
    assert (failed["origin.trace.id"], failed["origin.span.id"]) == origin


def deliveries(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [
        s for s in spans if s.kind == SPAN_KIND_CLIENT and "http.request.method" in s.attributes
    ]


def fan_outs(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.kind == SPAN_KIND_CONSUMER and s.name == "process outbox"]


async def stored_traceparent(database_url: str, product_id: int) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        value: str | None = await conn.fetchval(
            "SELECT traceparent FROM outbox WHERE topic = 'product.created' AND aggregate_id = $1",
            str(product_id),
        )
        return value
    finally:
        await conn.close()
