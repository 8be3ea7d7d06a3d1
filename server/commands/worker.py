"""python -m server worker: the webhook delivery worker (server/webhooks/delivery.py) and the
mail sender (server/runtime/mail_worker.py), side by side in one event loop.

Any number may run at once, on any machines: claims skip what another worker holds. SIGTERM
or SIGINT stops claiming; attempts in flight get the send timeout plus a second to finish,
the rest are released for the next worker; a batch of mails being sent is finished. A second
signal does not hurry it.
"""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import CollectorRegistry, start_http_server
from structlog.typing import FilteringBoundLogger

from server.audit.repository import AuditRepository
from server.db import sql_spans
from server.db.database import Database, create_pool
from server.db.mail_outbox import MailOutbox
from server.db.sqlfiles import load_queries
from server.runtime.mail import DEFAULT_TIMEOUT, build_mailer, parse_smtp_url
from server.runtime.mail_worker import MailConfig, MailMetrics, MailWorker
from server.runtime.settings import Settings
from server.runtime.tracing import flush_tracing, start_tracing
from server.webhooks.delivery import DeliveryWorker, WorkerConfig
from server.webhooks.metrics import DeliveryMetrics
from server.webhooks.repository import DeliveryQueue
from server.webhooks.sender import Sender
from server.webhooks.signing import SecretBox
from server.webhooks.ssrf import UrlGuard


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        per_endpoint=settings.webhook_endpoint_concurrency,
        endpoint_rate=settings.webhook_endpoint_rate,
        poll_seconds=settings.webhook_poll_seconds,
        retry_base_seconds=settings.webhook_retry_base_seconds,
        retry_horizon_seconds=settings.webhook_retry_horizon_seconds,
        disable_after_seconds=settings.webhook_disable_after_seconds,
        send_timeout=settings.webhook_timeout,
        retention_seconds=settings.outbox_retention_seconds,
    )


def mail_config(settings: Settings) -> MailConfig:
    timeout = parse_smtp_url(settings.smtp_url).timeout if settings.smtp_url else DEFAULT_TIMEOUT
    return MailConfig(
        poll_seconds=settings.webhook_poll_seconds,
        # An SMTP conversation is about eight replies, each within the timeout.
        lease_seconds=8 * timeout + 10.0,
        retention_seconds=settings.outbox_retention_seconds,
    )


async def run_worker(
    settings: Settings,
    logger: FilteringBoundLogger,
    *,
    stop: asyncio.Event | None = None,
    guard: UrlGuard | None = None,
    registry: CollectorRegistry | None = None,
) -> int:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    queries = load_queries()
    start_tracing(settings.otel_endpoint)  # spans of its SQL and webhook calls, when on
    pool = await create_pool(
        settings,
        statement_cache_size=max(256, len(queries) * 2),
        connection_class=sql_spans.connection_class(queries),
    )
    # No client waits on the worker: a busy pool is waited for rather than failed fast.
    db = Database(pool, acquire_timeout=max(settings.db_acquire_timeout, 10.0))
    config = worker_config(settings)
    guard = guard or UrlGuard(
        allow_http=settings.webhook_allow_http, allow_networks=settings.webhook_allow_networks
    )
    sender = Sender(guard, timeout=config.send_timeout, connections=config.per_endpoint)
    registry = registry or CollectorRegistry()
    metrics = DeliveryMetrics(registry)
    exporter = None
    if settings.worker_metrics_port:
        # prometheus_client's own server, in a thread; no token: keep it on a private address.
        exporter, _ = start_http_server(
            settings.worker_metrics_port, addr=settings.host, registry=registry
        )
    worker = DeliveryWorker(
        db,
        queue=DeliveryQueue(queries),
        audit=AuditRepository(queries),
        sender=sender,
        box=SecretBox(settings.secret_key),
        config=config,
        logger=logger,
        metrics=metrics,
    )
    mail = MailWorker(
        db,
        outbox=MailOutbox(queries, settings.secret_key),
        # SMTP, or .eml files in HOTPATH_DATA_DIR/mail when HOTPATH_SMTP_URL is unset.
        mailer=build_mailer(
            smtp_url=settings.smtp_url,
            sender=settings.mail_from,
            data_dir=settings.data_dir,
            logger=logger,
        ),
        config=mail_config(settings),
        logger=logger,
        metrics=MailMetrics(registry),
    )
    try:
        await asyncio.gather(worker.run(stop), mail.run(stop))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await sender.close()
        await db.close()
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()
        flush_tracing()
    return 0
