"""An outbox event keeps the W3C traceparent of the request that wrote it, with tracing off
(this process never starts tracing): the caller's, as its valid ``traceparent`` header said,
rebuilt from the parsed ids; NULL for a missing or malformed one. The fan-out copies it to each
delivery, and the worker's log lines for that delivery name the request's trace and span as
``origin.trace.id``/``origin.span.id`` (no ``trace.id``: with tracing off the delivery has no
trace of its own), while the webhook request itself carries no traceparent. The table refuses
a value that is not a traceparent. With tracing on: tests/e2e/test_webhook_tracing.py."""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import orjson
import pytest
from structlog.typing import FilteringBoundLogger

from server.commands.worker import run_worker
from server.runtime.settings import Settings
from tests.fixtures.identity import Accounts, Tokens
from tests.fixtures.webhook_worker import loopback_delivery_settings, own_webhooks_db
from tests.fixtures.webhooks import Receiver, running_receiver

__all__ = ["loopback_delivery_settings", "own_webhooks_db"]  # fixtures: settings, migrated_db

# Fixed, not random: they name parametrized cases, and pytest-xdist refuses a run whose workers
# collect different test ids. Each test has a database of its own, so no run sees another's rows.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


async def a_product(http: httpx.AsyncClient, staff: Tokens, headers: dict[str, str]) -> int:
    response = await http.post(
        "/v1/products",
        json={
            "sku": f"tp-{secrets.token_hex(5)}",
            "name": "Traced",
            "category": "tools",
            "price": {"amount_minor": 100, "currency": "EUR"},
            "stock": 5,
        },
        headers={**staff.headers, **headers},
    )
    assert response.status_code == 201, response.text
    product_id: int = response.json()["id"]
    return product_id


async def stored(db: asyncpg.Connection, topic: str, aggregate_id: int) -> str | None:
    value: str | None = await db.fetchval(
        "SELECT traceparent FROM outbox WHERE topic = $1 AND aggregate_id = $2",
        topic,
        str(aggregate_id),
    )
    return value


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_valid_traceparent_goes_with_the_events_of_a_product_and_an_order(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, staff = await accounts.create_and_login("staff")
    _, buyer = await accounts.create_and_login("customer")
    product = await a_product(http, staff, {"traceparent": TRACEPARENT})
    assert await stored(db, "product.created", product) == TRACEPARENT

    # An order writes order.placed and stock.changed (one create_outbox_events): both keep
    # the caller's traceparent, sampled flag included.
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    placed = await http.post(
        "/v1/orders",
        json={"items": [{"product_id": product, "quantity": 2}]},
        headers={**buyer.headers, "idempotency-key": "tp-1", "traceparent": unsampled},
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    assert await stored(db, "order.placed", order_id) == unsampled
    moves = await db.fetch(
        "SELECT traceparent FROM outbox WHERE topic = 'stock.changed'"
        " AND payload->>'order_id' = $1",
        str(order_id),
    )
    assert [m["traceparent"] for m in moves] == [unsampled]

    # A later version's header with extra fields is read as version 00 (the specification's
    # rule) and stored in version 00's form: never the header's text as it came.
    later = f"cc-{TRACE_ID}-{CALLER_SPAN}-01-what-comes-next"
    again = await a_product(http, staff, {"traceparent": later})
    assert await stored(db, "product.created", again) == TRACEPARENT


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",  # upper-case hex
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{CALLER_SPAN}-01",  # version ff is invalid
        f"00-{TRACE_ID}-{CALLER_SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID}-{CALLER_SPAN}-01'); DROP TABLE outbox; --",
    ],
)
async def test_a_missing_or_malformed_traceparent_stores_null(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection, header: str | None
) -> None:
    _, staff = await accounts.create_and_login("staff")
    headers = {} if header is None else {"traceparent": header}
    product = await a_product(http, staff, headers)
    count = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'product.created' AND aggregate_id = $1",
        str(product),
    )
    assert count == 1
    assert await stored(db, "product.created", product) is None


async def test_two_traceparent_headers_store_null(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    """A repeated traceparent is no valid one (RequestIdMiddleware): nothing is stored."""
    _, staff = await accounts.create_and_login("staff")
    other = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    request = http.build_request(
        "POST",
        "/v1/products",
        json={
            "sku": f"tp-{secrets.token_hex(5)}",
            "name": "Twice",
            "category": "tools",
            "price": {"amount_minor": 100, "currency": "EUR"},
            "stock": 1,
        },
        headers=[*staff.headers.items(), ("traceparent", TRACEPARENT), ("traceparent", other)],
    )
    response = await http.send(request)
    assert response.status_code == 201, response.text
    assert await stored(db, "product.created", response.json()["id"]) is None


async def test_a_ping_keeps_the_traceparent_of_the_request_that_asked_for_it(
    http: httpx.AsyncClient, accounts: Accounts, db: asyncpg.Connection
) -> None:
    _, admin = await accounts.create_and_login("admin")
    with running_receiver(Receiver()) as receiver:
        registered = await http.post(
            "/v1/webhooks",
            json={"url": receiver.url, "event_types": ["product.created"]},
            headers=admin.headers,
        )
        assert registered.status_code == 201, registered.text
    where = f"/v1/webhooks/{registered.json()['id']}/ping"
    traced = await http.post(where, headers={**admin.headers, "traceparent": TRACEPARENT})
    assert traced.status_code == 202, traced.text
    untraced = await http.post(where, headers=admin.headers)
    assert untraced.status_code == 202, untraced.text
    rows = await db.fetch("SELECT id, traceparent FROM webhook_deliveries")
    assert {r["id"]: r["traceparent"] for r in rows} == {
        traced.json()["delivery_id"]: TRACEPARENT,
        untraced.json()["delivery_id"]: None,
    }


async def test_the_table_refuses_what_is_not_a_traceparent(db: asyncpg.Connection) -> None:
    insert = (
        "INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, traceparent)"
        " VALUES ('order.placed', 'order', '1', '{}', $1)"
    )
    for bad in (
        "garbage",
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        TRACEPARENT + "-extra",
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(insert, bad)
    await db.execute(insert, TRACEPARENT)
    await db.execute(insert, None)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO webhook_deliveries"
            " (endpoint_id, message_id, event_type, body, traceparent, retry_until)"
            " VALUES (1, 'm', 'webhook.ping', '{}', 'garbage', now())"
        )


async def test_a_delivery_and_its_log_lines_name_the_request_that_caused_it(
    http: httpx.AsyncClient,
    accounts: Accounts,
    settings: Settings,
    logger: FilteringBoundLogger,
    log_stream: io.BytesIO,
    db: asyncpg.Connection,
) -> None:
    _, admin = await accounts.create_and_login("admin")
    # The first attempt fails (a 500): its log line is the one an SRE starts from.
    with running_receiver(Receiver(answer=lambda n: 500 if n == 0 else 200)) as receiver:
        registered = await http.post(
            "/v1/webhooks",
            json={"url": receiver.url, "event_types": ["product.created"]},
            headers=admin.headers,
        )
        assert registered.status_code == 201, registered.text
        receiver.secrets.append(registered.json()["secret"])
        product = await a_product(http, admin, {"traceparent": TRACEPARENT})
        untraced = await a_product(http, admin, {})
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker(settings, logger, stop=stop))
        try:

            async def delivered() -> bool:
                done = await db.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
                )
                return bool(done == 2)

            await eventually(delivered)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert receiver.bad == []
    bodies = {orjson.loads(r.body)["data"]["id"]: r for r in receiver.received}
    assert set(bodies) == {product, untraced}
    for received in receiver.received:  # tracing off: the webhook request carries no context
        assert "traceparent" not in received.headers

    rows = await db.fetch(
        "SELECT d.traceparent, o.aggregate_id FROM webhook_deliveries d"
        " JOIN outbox o ON o.id = d.event_id"
    )
    assert {r["aggregate_id"]: r["traceparent"] for r in rows} == {
        str(product): TRACEPARENT,
        str(untraced): None,
    }

    lines = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    failed = [line for line in lines if line["message"] == "webhook_attempt_failed"]
    assert len(failed) == 2, failed  # one per delivery's first attempt
    by_origin = {line.get("origin.trace.id"): line for line in failed}
    assert set(by_origin) == {TRACE_ID, None}
    assert by_origin[TRACE_ID]["origin.span.id"] == CALLER_SPAN
    assert "origin.span.id" not in by_origin[None]
    for line in failed:
        assert "trace.id" not in line  # no trace of its own with tracing off
