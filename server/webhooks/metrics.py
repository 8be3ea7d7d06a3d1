"""The delivery worker's metrics: attempts by outcome and their duration, deliveries finished,
and the backlog (outbox events not yet fanned out, deliveries pending, the oldest of each).

The worker serves them on HOTPATH_WORKER_METRICS_PORT (off by default) with prometheus_client's
own small HTTP server; the backlog gauges describe the whole database, so every worker reports
the same figures (aggregate them with max, not sum).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# An attempt is bounded by HOTPATH_WEBHOOK_TIMEOUT (10 s by default).
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "webhook_attempts",
            "Webhook delivery attempts, by outcome (succeeded, failed, blocked).",
            ("outcome",),
            registry=registry,
        )
        self.duration = Histogram(
            "webhook_attempt_duration_seconds",
            "How long a webhook attempt took, connecting and reading the answer included.",
            ("outcome",),
            buckets=_BUCKETS,
            registry=registry,
        )
        self.finished = Counter(
            "webhook_deliveries_finished",
            "Webhook deliveries that succeeded or died (retries exhausted), by status.",
            ("status",),
            registry=registry,
        )
        self.events_waiting = Gauge(
            "outbox_events_unpublished",
            "Outbox events not yet fanned out to webhook endpoints.",
            registry=registry,
        )
        self.events_age = Gauge(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest outbox event not yet fanned out (0: none).",
            registry=registry,
        )
        self.pending = Gauge(
            "webhook_deliveries_pending",
            "Webhook deliveries waiting for their next attempt.",
            registry=registry,
        )
        self.pending_age = Gauge(
            "webhook_oldest_pending_delivery_age_seconds",
            "Age of the oldest webhook delivery not yet delivered (0: none).",
            registry=registry,
        )
        for outcome in ("succeeded", "failed", "blocked"):
            # Every series from the start (at 0): rates and quantiles need no first attempt.
            self.attempts.labels(outcome)
            self.duration.labels(outcome)
        for status in ("succeeded", "dead"):
            self.finished.labels(status)

    def attempt(self, outcome: str, seconds: float) -> None:
        self.attempts.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def backlog(self, events: int, events_age: float, pending: int, pending_age: float) -> None:
        self.events_waiting.set(events)
        self.events_age.set(events_age)
        self.pending.set(pending)
        self.pending_age.set(pending_age)
