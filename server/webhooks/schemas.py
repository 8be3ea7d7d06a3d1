"""Shapes of the webhook endpoints and deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from server.web.schemas import DEFAULT_LIMIT, PageLimit, Strict
from server.webhooks.events import EVENT_TYPES, PATTERN
from server.webhooks.repository import Attempt, Endpoint
from server.webhooks.service import DeliveryRecord
from server.webhooks.ssrf import MAX_URL_LENGTH

Url = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="https (http only where HOTPATH_WEBHOOK_ALLOW_HTTP is on); its host must "
        "resolve to public addresses only.",
        examples=["https://example.com/hooks/hotpath"],
    ),
]
EventPattern = Annotated[
    str,
    msgspec.Meta(
        pattern=PATTERN,
        max_length=100,
        description="An event type, or a glob over them with `*` (`order.*`, `*`). Known "
        "types: " + ", ".join(sorted(EVENT_TYPES)) + ".",
    ),
]
EventPatterns = Annotated[list[EventPattern], msgspec.Meta(min_length=1, max_length=32)]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class NewEndpointBody(Strict):
    url: Url
    event_types: EventPatterns
    description: Description = ""


class EndpointPatch(Strict):
    url: Url | None = None
    event_types: EventPatterns | None = None
    description: Description | None = None
    enabled: bool | None = None


class EndpointQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None


class DeliveryQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None


class EndpointView(msgspec.Struct):
    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    rotated_at: dt.datetime | None
    previous_secret_valid_until: dt.datetime | None


class IssuedEndpointView(EndpointView):
    """Only in the answers to create and rotate-secret: the secret is never shown again."""

    secret: str


class EndpointList(msgspec.Struct):
    data: list[EndpointView]
    next_cursor: str | None


class AttemptView(msgspec.Struct):
    attempt: int
    started_at: dt.datetime
    latency_ms: int
    outcome: str
    response_status: int | None
    error: str | None


class DeliveryView(msgspec.Struct):
    id: int
    event_id: int | None
    message_id: str
    event_type: str
    status: str
    attempt_count: int
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: list[AttemptView]


class DeliveryList(msgspec.Struct):
    data: list[DeliveryView]
    next_cursor: str | None


class PingView(msgspec.Struct):
    delivery_id: int


def endpoint_view(endpoint: Endpoint) -> EndpointView:
    return EndpointView(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        rotated_at=endpoint.rotated_at,
        previous_secret_valid_until=endpoint.previous_valid_until,
    )


def issued_view(endpoint: Endpoint, secret: str) -> IssuedEndpointView:
    return IssuedEndpointView(**msgspec.structs.asdict(endpoint_view(endpoint)), secret=secret)


def _attempt_view(attempt: Attempt) -> AttemptView:
    return AttemptView(
        attempt=attempt.attempt,
        started_at=attempt.started_at,
        latency_ms=attempt.latency_ms,
        outcome=attempt.outcome,
        response_status=attempt.response_status,
        error=attempt.error,
    )


def delivery_view(record: DeliveryRecord) -> DeliveryView:
    d = record.delivery
    return DeliveryView(
        id=d.id,
        event_id=d.event_id,
        message_id=d.message_id,
        event_type=d.event_type,
        status=d.status,
        attempt_count=d.attempts,
        created_at=d.created_at,
        last_attempt_at=d.last_attempt_at,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        finished_at=d.finished_at,
        attempts=[_attempt_view(a) for a in record.attempts],
    )
