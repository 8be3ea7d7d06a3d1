"""Webhook endpoints: register, list, read, change, delete, rotate the secret, ping; their
deliveries: list and redeliver. Holders of ``webhooks:write`` manage every endpoint."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import orjson

from server.audit.repository import AuditRepository
from server.auth.principal import Principal
from server.db.database import Connection, Database
from server.web.context import RequestContext
from server.web.errors import Conflict, NotFound, ValidationFailed
from server.webhooks import events
from server.webhooks.repository import (
    Attempt,
    Delivery,
    Endpoint,
    EndpointChanges,
    WebhooksRepository,
)
from server.webhooks.signing import SecretBox, new_secret
from server.webhooks.ssrf import UnsafeUrl, UrlGuard

_NO_ENDPOINT = "No such webhook endpoint."
_NO_DELIVERY = "No such delivery."


class UnsafeWebhookUrl(ValidationFailed):
    slug = "unsafe-webhook-url"
    title = "Webhook URL refused"


@dataclass(frozen=True, slots=True)
class IssuedEndpoint:
    endpoint: Endpoint
    secret: str


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    delivery: Delivery
    attempts: list[Attempt]


class WebhooksService:
    def __init__(
        self,
        db: Database,
        *,
        endpoints: WebhooksRepository,
        audit: AuditRepository,
        guard: UrlGuard,
        box: SecretBox,
        rotation_grace: dt.timedelta,
        retry_horizon: dt.timedelta,
    ) -> None:
        self.db = db
        self.endpoints = endpoints
        self.audit = audit
        self.guard = guard
        self.box = box
        self.rotation_grace = rotation_grace
        self.retry_horizon = retry_horizon

    def check_url(self, url: str) -> None:
        try:
            self.guard.check_url(url)
        except UnsafeUrl as exc:
            raise UnsafeWebhookUrl(
                str(exc), errors=[{"pointer": "/url", "detail": str(exc)}]
            ) from None

    async def check_destination(self, url: str) -> None:
        """The URL's shape, then its host's addresses as DNS gives them now."""
        self.check_url(url)
        target = self.guard.check_url(url)
        try:
            await self.guard.resolve(target.host, target.port)
        except UnsafeUrl as exc:
            raise UnsafeWebhookUrl(
                str(exc), errors=[{"pointer": "/url", "detail": str(exc)}]
            ) from None

    async def create(
        self,
        actor: Principal,
        *,
        url: str,
        description: str,
        event_types: list[str],
        ctx: RequestContext,
    ) -> IssuedEndpoint:
        _check_patterns(event_types)
        await self.check_destination(url)
        secret = new_secret()
        async with self.db.transaction() as conn:
            endpoint = await self.endpoints.create(
                conn,
                url=url,
                description=description,
                event_types=sorted(set(event_types)),
                secret_box=self.box.seal(secret),
                created_by=actor.user_id,
            )
            await self._record(conn, "webhook.created", actor, endpoint, ctx)
        return IssuedEndpoint(endpoint, secret)

    async def page(self, *, after: tuple[dt.datetime, int] | None, limit: int) -> list[Endpoint]:
        async with self.db.connection() as conn:
            return await self.endpoints.page(conn, after=after, limit=limit)

    async def get(self, endpoint_id: int) -> Endpoint:
        async with self.db.connection() as conn:
            return await self._existing(conn, endpoint_id)

    async def update(
        self, actor: Principal, endpoint_id: int, changes: EndpointChanges, ctx: RequestContext
    ) -> Endpoint:
        if changes.event_types is not None:
            _check_patterns(changes.event_types)
            changes = EndpointChanges(
                changes.url, changes.description, sorted(set(changes.event_types)), changes.enabled
            )
        if changes.url is not None:
            await self.check_destination(changes.url)
        async with self.db.transaction() as conn:
            updated = await self.endpoints.update(conn, endpoint_id, changes)
            if updated is None:
                raise NotFound(_NO_ENDPOINT)
            await self._record(conn, "webhook.updated", actor, updated, ctx)
        return updated

    async def delete(self, actor: Principal, endpoint_id: int, ctx: RequestContext) -> None:
        async with self.db.transaction() as conn:
            endpoint = await self._existing(conn, endpoint_id)
            await self.endpoints.delete(conn, endpoint_id)
            await self._record(conn, "webhook.deleted", actor, endpoint, ctx)

    async def rotate(
        self, actor: Principal, endpoint_id: int, ctx: RequestContext
    ) -> IssuedEndpoint:
        secret = new_secret()
        grace_end = dt.datetime.now(dt.UTC) + self.rotation_grace
        async with self.db.transaction() as conn:
            rotated = await self.endpoints.rotate(
                conn, endpoint_id, self.box.seal(secret), grace_end
            )
            if rotated is None:
                raise NotFound(_NO_ENDPOINT)
            await self._record(conn, "webhook.secret_rotated", actor, rotated, ctx)
        return IssuedEndpoint(rotated, secret)

    async def ping(self, endpoint_id: int) -> int:
        """Queues a ``webhook.ping`` message for the worker; the delivery's id."""
        message_id = "msg_" + secrets.token_hex(12)
        async with self.db.transaction() as conn:
            endpoint = await self._existing(conn, endpoint_id)
            if not endpoint.enabled:
                raise Conflict("The endpoint is disabled: enable it before pinging it.")
            body = message_body(events.PING, dt.datetime.now(dt.UTC), {"endpoint_id": endpoint.id})
            return await self.endpoints.create_ping(
                conn, endpoint.id, message_id, body, self.retry_horizon.total_seconds()
            )

    async def deliveries(
        self, endpoint_id: int, *, before: int | None, limit: int
    ) -> list[DeliveryRecord]:
        async with self.db.connection() as conn:
            await self._existing(conn, endpoint_id)
            rows = await self.endpoints.deliveries(conn, endpoint_id, before=before, limit=limit)
            attempts = await self.endpoints.attempts(conn, [d.id for d in rows])
        by_delivery: dict[int, list[Attempt]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        return [DeliveryRecord(d, by_delivery.get(d.id, [])) for d in rows]

    async def redeliver(self, endpoint_id: int, delivery_id: int) -> DeliveryRecord:
        async with self.db.transaction() as conn:
            await self._existing(conn, endpoint_id)
            if await self.endpoints.delivery(conn, endpoint_id, delivery_id) is None:
                raise NotFound(_NO_DELIVERY)
            if not await self.endpoints.redeliver(
                conn, endpoint_id, delivery_id, self.retry_horizon.total_seconds()
            ):
                raise Conflict("The delivery is being sent right now; try again shortly.")
            delivery = await self.endpoints.delivery(conn, endpoint_id, delivery_id)
            assert delivery is not None
            attempts = await self.endpoints.attempts(conn, [delivery_id])
        return DeliveryRecord(delivery, attempts)

    async def _existing(self, conn: Connection, endpoint_id: int) -> Endpoint:
        endpoint = await self.endpoints.get(conn, endpoint_id)
        if endpoint is None:
            raise NotFound(_NO_ENDPOINT)
        return endpoint

    async def _record(
        self,
        conn: Connection,
        action: str,
        actor: Principal,
        endpoint: Endpoint,
        ctx: RequestContext,
    ) -> None:
        await self.audit.record(
            conn,
            ctx,
            action,
            actor_id=actor.user_id,
            target_type="webhook",
            target_id=str(endpoint.id),
            details={
                "url": endpoint.url,
                "event_types": endpoint.event_types,
                "enabled": endpoint.enabled,
            },
        )


def _check_patterns(patterns: list[str]) -> None:
    for i, pattern in enumerate(patterns):
        if not events.matches_something(pattern):
            raise ValidationFailed(
                "An event type pattern matches no event type.",
                errors=[
                    {
                        "pointer": f"/event_types/{i}",
                        "detail": f"{pattern!r} matches none of "
                        + ", ".join(sorted(events.EVENT_TYPES)),
                    }
                ],
            )


def message_body(event_type: str, at: dt.datetime, data: object) -> str:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    return orjson.dumps(
        {"type": event_type, "timestamp": at, "data": data}, option=orjson.OPT_UTC_Z
    ).decode()
