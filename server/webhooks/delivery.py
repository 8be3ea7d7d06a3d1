"""The delivery worker's loop: outbox events fanned out to endpoints, deliveries claimed and sent.

Fan-out: a transaction claims the oldest unpublished outbox rows (FOR UPDATE SKIP LOCKED),
writes one delivery per matching enabled endpoint and marks the rows published; a worker that
dies before committing leaves them to the next one.

Sending: a claim (SKIP LOCKED again) takes due deliveries and pushes each one's next attempt
past a lease, under a claim token. The result is written only under that token, so an attempt
is recorded once; if the worker dies mid-attempt the lease runs out and the delivery is sent
again (at least once, never lost). On SIGTERM the worker stops claiming, lets the attempts in
flight finish within a grace period, and releases what is left (due again at once).

Retries: exponential backoff (base x 3^n, at most 6 h) with +-20% jitter; once the next try
would fall past the delivery's horizon (a day by default) it is dead. An endpoint whose
deliveries die while nothing has succeeded for HOTPATH_WEBHOOK_DISABLE_AFTER_SECONDS is
disabled (audited); its pending deliveries die with it and can be redelivered.

Retention: every five minutes, published outbox events and finished deliveries older than
HOTPATH_OUTBOX_RETENTION_SECONDS are deleted in batches.

Tracing: an event keeps the traceparent of the request that wrote it, and each delivery a copy.
A fan-out and each attempt are spans of traces of their own (a delivery comes later and may be
retried for a day), linked to those requests' spans; an attempt's log lines carry the request's
ids as ``origin.trace.id``/``origin.span.id`` and, with tracing on, their own attempt's span as
``trace.id``/``span.id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from aiolimiter import AsyncLimiter
from cryptography.exceptions import InvalidTag
from opentelemetry.trace import SpanKind
from structlog.contextvars import bind_contextvars
from structlog.typing import FilteringBoundLogger

from middleware.request_id import SPAN_ID_FIELD, TRACE_ID_FIELD
from server.audit.repository import AuditRepository
from server.db.database import Database
from server.runtime.tracing import linked_span, origin_fields
from server.web.context import RequestContext
from server.webhooks import events
from server.webhooks.metrics import DeliveryMetrics
from server.webhooks.repository import Claimed, DeliveryQueue, NewAttempt, OutboxEvent
from server.webhooks.sender import Sender, SendResult
from server.webhooks.service import message_body
from server.webhooks.signing import SecretBox, signature_header

MAX_DELAY = 6 * 3600.0
RECORD_TRIES = 6  # about 6 s of retrying in all
BACKLOG_EVERY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    batch: int = 100
    max_in_flight: int = 64
    per_endpoint: int = 4
    endpoint_rate: float = 50.0
    poll_seconds: float = 0.5
    retry_base_seconds: float = 5.0
    retry_horizon_seconds: float = 86400.0
    disable_after_seconds: float = 3 * 86400.0
    send_timeout: float = 10.0
    retention_seconds: float = 7 * 86400.0  # 0: nothing is pruned
    prune_every_seconds: float = 300.0
    prune_batch: int = 5000

    @property
    def lease_seconds(self) -> float:
        # Longer than an attempt can take, waiting for its endpoint's slot included.
        return self.send_timeout * 2 + 5.0


def retry_delay(failures: int, base: float) -> float:
    """Seconds before the next try after ``failures`` failed attempts in a row."""
    delay: float = min(base * 3 ** min(failures - 1, 30), MAX_DELAY)
    return delay * random.uniform(0.8, 1.2)


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        *,
        queue: DeliveryQueue,
        audit: AuditRepository,
        sender: Sender,
        box: SecretBox,
        config: WorkerConfig,
        logger: FilteringBoundLogger,
        metrics: DeliveryMetrics | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.audit = audit
        self.sender = sender
        self.box = box
        self.config = config
        self.logger = logger
        self._tasks: dict[asyncio.Task[None], Claimed] = {}
        self._busy: Counter[int] = Counter()
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._rates: dict[int, AsyncLimiter] = {}
        self._room = asyncio.Event()
        self.outcomes: Counter[str] = Counter()
        self._next_prune = 0.0
        self._next_backlog = 0.0
        self.metrics = metrics

    async def run(self, stop: asyncio.Event, *, grace: float | None = None) -> None:
        """Until ``stop`` is set; then in-flight attempts get ``grace`` seconds (default: the
        send timeout plus one) to finish, and the rest are released."""
        self.logger.info("webhook_worker_started", max_in_flight=self.config.max_in_flight)
        while not stop.is_set():
            try:
                fanned = await self.fan_out_once()
                sent = await self.dispatch_once()
                if self.metrics is not None and time.monotonic() >= self._next_backlog:
                    self._next_backlog = time.monotonic() + BACKLOG_EVERY_SECONDS
                    await self.measure_backlog(self.metrics)
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + self.config.prune_every_seconds
                    await self.prune_once()
            except Exception as exc:  # PostgreSQL away, say: keep going, slower
                self.logger.warning("webhook_worker_error", error=f"{type(exc).__name__}: {exc}")
                fanned = sent = 0
                await _wait(stop, 1.0)
            if fanned or sent:
                continue
            self._room.clear()
            waiter = asyncio.ensure_future(self._room.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper},
                timeout=self.config.poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            stopper.cancel()
        await self.drain(self.config.send_timeout + 1.0 if grace is None else grace)
        self.logger.info("webhook_worker_stopped")

    async def drain(self, grace: float) -> None:
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def fan_out_once(self) -> int:
        async with self.db.transaction() as conn:
            claimed = await self.queue.claim_events(conn, self.config.batch)
            if not claimed:
                return 0
            # OpenTelemetry's messaging conventions for a batch: a process span linked to each
            # message's creation (here: the requests that wrote the events).
            with linked_span(
                "process outbox",
                (e.traceparent for e in claimed),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.operation.type": "process",
                    "messaging.destination.name": "outbox",
                    "messaging.batch.message_count": len(claimed),
                },
            ):
                endpoints = await self.queue.enabled_endpoints(conn)
                rows = [row for event in claimed for row in _fan_out(event, endpoints)]
                await self.queue.fan_out(conn, rows, self.config.retry_horizon_seconds)
                await self.queue.mark_published(conn, [e.id for e in claimed])
        return len(claimed)

    async def measure_backlog(self, metrics: DeliveryMetrics) -> None:
        async with self.db.connection() as conn:
            metrics.backlog(*await self.queue.backlog(conn))

    async def prune_once(self) -> tuple[int, int]:
        """Retention: published outbox events and finished deliveries older than the retention
        period go, a batch at a time until none is left."""
        if self.config.retention_seconds <= 0:
            return 0, 0
        events = deliveries = 0
        while True:
            async with self.db.connection() as conn:
                pruned = await self.queue.prune(
                    conn,
                    older_than=self.config.retention_seconds,
                    limit=self.config.prune_batch,
                )
            events, deliveries = events + pruned[0], deliveries + pruned[1]
            if max(pruned) < self.config.prune_batch:
                break
        if events or deliveries:
            self.logger.info("webhook_retention", events=events, deliveries=deliveries)
        return events, deliveries

    async def dispatch_once(self) -> int:
        room = self.config.max_in_flight - len(self._tasks)
        if room <= 0:
            return 0
        full = [e for e, n in self._busy.items() if n >= self.config.per_endpoint]
        token = uuid.uuid4()
        async with self.db.transaction() as conn:
            claimed = await self.queue.claim(
                conn,
                limit=min(room, self.config.batch),
                per_endpoint=self.config.per_endpoint,
                skip_endpoints=full,
                lease_seconds=self.config.lease_seconds,
                token=token,
            )
        for delivery in claimed:
            self._busy[delivery.endpoint_id] += 1
            task = asyncio.create_task(self._attempt(delivery, token))
            self._tasks[task] = delivery
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        delivery = self._tasks.pop(task)
        self._busy[delivery.endpoint_id] -= 1
        if self._busy[delivery.endpoint_id] <= 0:
            del self._busy[delivery.endpoint_id]
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            self.logger.error(
                "webhook_attempt_error",
                delivery_id=delivery.id,
                error=repr(task.exception()),
                **origin_fields(delivery.traceparent),
            )

    async def _attempt(self, delivery: Claimed, token: uuid.UUID) -> None:
        # A task of its own: what is bound here reaches this attempt's log lines only.
        bind_contextvars(**origin_fields(delivery.traceparent))
        sent = False
        recording: asyncio.Future[None] | None = None
        try:
            slot = self._slots.setdefault(
                delivery.endpoint_id, asyncio.Semaphore(self.config.per_endpoint)
            )
            rate = self._rates.setdefault(
                delivery.endpoint_id, AsyncLimiter(self.config.endpoint_rate, 1.0)
            )
            async with slot:
                await rate.acquire()
                try:
                    headers, body = self._signed(delivery)
                except InvalidTag:
                    result = _unreadable_secret()
                else:
                    sent = True
                    result = await self.sender.send(
                        delivery.endpoint_id,
                        delivery.url,
                        headers,
                        body,
                        origin=delivery.traceparent,
                    )
            if result.trace_id is not None:
                bind_contextvars(**{TRACE_ID_FIELD: result.trace_id, SPAN_ID_FIELD: result.span_id})
            self.outcomes[result.outcome] += 1
            if self.metrics is not None:
                self.metrics.attempt(result.outcome, result.latency_ms / 1000)
            recording = asyncio.ensure_future(self._record_surely(delivery, token, result))
            await asyncio.shield(recording)
        except asyncio.CancelledError:
            if recording is not None:  # the answer is in: write it down rather than resend
                await recording
            else:  # stopping: due again now rather than when the lease runs out
                await asyncio.shield(self._release(delivery, token, sent=sent))
            raise

    def _signed(self, delivery: Claimed) -> tuple[dict[str, str], bytes]:
        keys = [self.box.open(delivery.secret_box)]
        if (
            delivery.previous_secret_box is not None
            and delivery.previous_valid_until is not None
            and delivery.previous_valid_until > dt.datetime.now(dt.UTC)
        ):
            keys.append(self.box.open(delivery.previous_secret_box))
        body = delivery.body.encode()
        timestamp = int(time.time())
        return {
            "content-type": "application/json",
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, delivery.message_id, timestamp, body),
        }, body

    async def _record_surely(self, delivery: Claimed, token: uuid.UUID, result: SendResult) -> None:
        """An answer not written down is sent again when the lease runs out: worth a few tries
        through a busy pool or a database restart."""
        for attempt in range(RECORD_TRIES):
            try:
                await self._record(delivery, token, result)
                return
            except Exception as exc:
                if attempt == RECORD_TRIES - 1:
                    raise
                self.logger.warning(
                    "webhook_record_retry", delivery_id=delivery.id, error=type(exc).__name__
                )
                await asyncio.sleep(0.2 * 2**attempt)

    async def _record(self, delivery: Claimed, token: uuid.UUID, result: SendResult) -> None:
        attempt = NewAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            started_at=result.started_at,
            latency_ms=result.latency_ms,
            outcome=result.outcome,
            response_status=result.status,
            error=result.error,
            response_excerpt=result.excerpt,
        )
        log = self.logger.bind(
            delivery_id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            attempt=delivery.attempts,
            outcome=result.outcome,
            status=result.status,
            latency_ms=result.latency_ms,
        )
        async with self.db.transaction() as conn:
            if result.outcome == "succeeded":
                if not await self.queue.succeeded(conn, delivery.id, token, attempt):
                    log.warning("webhook_claim_lost")
                elif self.metrics is not None:
                    self.metrics.finished.labels("succeeded").inc()
                return
            delay = retry_delay(delivery.failures + 1, self.config.retry_base_seconds)
            retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
            moved = await self.queue.failed(conn, delivery.id, token, attempt, retry_at)
            if moved is None:
                log.warning("webhook_claim_lost")
                return
            endpoint_id, status = moved
            died = status == "dead"
            disabled = await self.queue.endpoint_failing(
                conn,
                endpoint_id,
                died=died,
                disable_after=self.config.disable_after_seconds,
            )
            if disabled:
                await self.queue.kill_pending(conn, endpoint_id)
                await self.audit.record(
                    conn,
                    RequestContext(),
                    "webhook.disabled",
                    target_type="webhook",
                    target_id=str(endpoint_id),
                    details={"reason": "failing deliveries", "delivery_id": delivery.id},
                )
        if died and self.metrics is not None:
            self.metrics.finished.labels("dead").inc()
        if disabled:
            log.warning("webhook_endpoint_disabled")
        elif died:
            log.warning("webhook_delivery_dead", error=result.error)
        else:
            log.info("webhook_attempt_failed", error=result.error, retry_in=round(delay, 1))

    async def _release(self, delivery: Claimed, token: uuid.UUID, *, sent: bool) -> None:
        try:
            async with self.db.transaction() as conn:
                await self.queue.release(conn, delivery.id, token, sent=sent)
        except Exception as exc:  # its lease runs out instead
            self.logger.warning("webhook_release_failed", delivery_id=delivery.id, error=repr(exc))


def _unreadable_secret() -> SendResult:
    """A secret sealed under another HOTPATH_SECRET_KEY: a failed attempt that says so (and is
    retried on schedule, so rotating the secret in time saves the delivery)."""
    return SendResult(
        started_at=dt.datetime.now(dt.UTC),
        latency_ms=0,
        outcome="failed",
        status=None,
        error="the endpoint's signing secret cannot be read (HOTPATH_SECRET_KEY changed?): "
        "rotate it",
        excerpt=None,
    )


def _fan_out(
    event: OutboxEvent, endpoints: list[tuple[int, list[str]]]
) -> list[tuple[int, int, str, str, str, str | None]]:
    targets = [e for e, patterns in endpoints if events.matches(patterns, event.topic)]
    if not targets:
        return []
    body = message_body(event.topic, event.created_at, event.payload)
    # One webhook-id per event (the same for every endpoint and every retry).
    message_id = f"msg_{event.id}_{secrets.token_hex(6)}"
    return [
        (endpoint_id, event.id, message_id, event.topic, body, event.traceparent)
        for endpoint_id in targets
    ]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
