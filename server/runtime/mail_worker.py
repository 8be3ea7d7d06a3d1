"""The worker's mail loop: sends what requests wrote to the mail outbox (server/db/mail_outbox.py).

A claim (FOR UPDATE SKIP LOCKED) takes due mails and pushes each one's next try past a lease,
under a claim token; the result is written only under that token. A worker that dies mid-send
leaves the mail due again when the lease runs out, so a mail goes out at least once (rarely
twice), never not at all while its token lives. A failed send is retried on the webhooks'
schedule (about 5 s, 15 s, 45 s, 2 min, ... each +-20%) until the token in it would have
expired; a refusal for good (a 5xx to the sender, the recipient or the data) is dead at once.

Nothing here logs a mail's recipient, subject or body: the id, the kind and the error only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from structlog.typing import FilteringBoundLogger

from server.db.database import Connection, Database
from server.db.mail_outbox import ClaimedMail, MailOutbox
from server.runtime.mail import Mailer, MailError
from server.webhooks.delivery import retry_delay

T = TypeVar("T")
BACKLOG_EVERY_SECONDS = 5.0
RECORD_TRIES = 4


@dataclass(frozen=True, slots=True)
class MailConfig:
    batch: int = 20
    concurrency: int = 4  # SMTP conversations at once
    poll_seconds: float = 0.5
    retry_base_seconds: float = 5.0
    # Longer than a send can take: an SMTP timeout (10 s by default, 300 at most) per reply.
    lease_seconds: float = 600.0
    retention_seconds: float = 7 * 86400.0  # 0: finished mails are kept
    prune_every_seconds: float = 300.0
    prune_batch: int = 5000


class MailMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "mail_attempts",
            "Attempts to hand a mail to the SMTP server (or the .eml folder), by outcome.",
            ("outcome",),
            registry=registry,
        )
        self.dead = Counter(
            "mail_dead", "Mails given up on (refused, or their token expired).", registry=registry
        )
        self.pending = Gauge("mail_pending", "Mails waiting to be sent.", registry=registry)
        self.pending_age = Gauge(
            "mail_oldest_pending_age_seconds",
            "Age of the oldest mail not yet sent (0: none).",
            registry=registry,
        )
        for outcome in ("sent", "failed"):
            self.attempts.labels(outcome)


class MailWorker:
    def __init__(
        self,
        db: Database,
        *,
        outbox: MailOutbox,
        mailer: Mailer,
        config: MailConfig,
        logger: FilteringBoundLogger,
        metrics: MailMetrics | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.mailer = mailer
        self.config = config
        self.logger = logger
        self.metrics = metrics
        self._next_prune = 0.0
        self._next_backlog = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; a batch being sent is finished first."""
        while not stop.is_set():
            try:
                sent = await self.send_due_once()
                now = time.monotonic()
                if self.metrics is not None and now >= self._next_backlog:
                    self._next_backlog = now + BACKLOG_EVERY_SECONDS
                    async with self.db.connection() as conn:
                        pending, age = await self.outbox.backlog(conn)
                    self.metrics.pending.set(pending)
                    self.metrics.pending_age.set(age)
                if now >= self._next_prune:
                    self._next_prune = now + self.config.prune_every_seconds
                    await self.prune_once()
            except Exception as exc:  # PostgreSQL away, say: keep going, slower
                self.logger.warning("mail_worker_error", error=f"{type(exc).__name__}: {exc}")
                sent = 0
                await _wait(stop, 1.0)
            if not sent:
                await _wait(stop, self.config.poll_seconds)

    async def send_due_once(self) -> int:
        """Claim the due mails (one batch) and try each; how many were claimed."""
        token = uuid.uuid4()
        async with self.db.transaction() as conn:
            claimed = await self.outbox.claim(
                conn, limit=self.config.batch, lease_seconds=self.config.lease_seconds, token=token
            )
        slots = asyncio.Semaphore(self.config.concurrency)

        async def one(mail: ClaimedMail) -> None:
            async with slots:
                await self._send(mail, token)

        await asyncio.gather(*(one(mail) for mail in claimed))
        return len(claimed)

    async def prune_once(self) -> int:
        if self.config.retention_seconds <= 0:
            return 0
        pruned = 0
        while True:
            async with self.db.connection() as conn:
                batch = await self.outbox.prune(
                    conn, older_than=self.config.retention_seconds, limit=self.config.prune_batch
                )
            pruned += batch
            if batch < self.config.prune_batch:
                break
        if pruned:
            self.logger.info("mail_retention", mails=pruned)
        return pruned

    async def _send(self, mail: ClaimedMail, token: uuid.UUID) -> None:
        log = self.logger.bind(mail_id=mail.id, kind=mail.kind, attempt=mail.attempts)
        try:
            if mail.message is None:
                raise MailError(
                    "the mail cannot be read (HOTPATH_SECRET_KEY changed?)", permanent=True
                )
            await self.mailer.send(mail.message)
        except asyncio.CancelledError:
            # Stopping mid-send: due again at once (it may have gone out: at least once).
            await asyncio.shield(self._release(mail, token))
            raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, MailError) else type(exc).__name__
            permanent = isinstance(exc, MailError) and exc.permanent
            await self._failed(mail, token, error, permanent=permanent, log=log)
            return
        if self.metrics is not None:
            self.metrics.attempts.labels("sent").inc()
        if await self._surely(lambda conn: self.outbox.sent(conn, mail.id, token), log):
            log.info("mail_sent")
        else:
            log.warning("mail_claim_lost")

    async def _failed(
        self,
        mail: ClaimedMail,
        token: uuid.UUID,
        error: str,
        *,
        permanent: bool,
        log: FilteringBoundLogger,
    ) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels("failed").inc()
        delay = retry_delay(mail.attempts, self.config.retry_base_seconds)
        retry_at = None if permanent else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        status = await self._surely(
            lambda conn: self.outbox.failed(conn, mail.id, token, retry_at=retry_at, error=error),
            log,
        )
        if status == "dead":
            if self.metrics is not None:
                self.metrics.dead.inc()
            log.warning("mail_dead", error=error)
        elif status == "pending":
            log.info("mail_failed", error=error, retry_in=round(delay, 1))
        else:
            log.warning("mail_claim_lost")

    async def _surely(
        self, write: Callable[[Connection], Awaitable[T]], log: FilteringBoundLogger
    ) -> T:
        """A result not written down means the mail is sent again when its lease runs out:
        worth a few tries through a busy pool or a database restart."""
        for attempt in range(RECORD_TRIES):
            try:
                async with self.db.transaction() as conn:
                    return await write(conn)
            except Exception as exc:
                if attempt == RECORD_TRIES - 1:
                    raise
                log.warning("mail_record_retry", error=type(exc).__name__)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def _release(self, mail: ClaimedMail, token: uuid.UUID) -> None:
        try:
            async with self.db.transaction() as conn:
                await self.outbox.release(conn, mail.id, token)
        except Exception as exc:  # its lease runs out instead
            self.logger.warning("mail_release_failed", mail_id=mail.id, error=type(exc).__name__)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
