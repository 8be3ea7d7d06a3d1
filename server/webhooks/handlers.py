"""HTTP in/out for webhook endpoints and their deliveries."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.web.access import principal_of
from server.web.apidoc import api
from server.web.context import request_context
from server.web.pagination import paged_response
from server.web.responses import JSONResponse, path_id, read_json, read_query
from server.web.state import container
from server.webhooks import schemas
from server.webhooks.repository import EndpointChanges

_LIST_SCOPE = "webhooks"
_NO_STORE = {"cache-control": "no-store"}
_NO_ENDPOINT = "No such webhook endpoint."
_TAGS = ("webhooks",)


@api(
    summary="Register a webhook endpoint",
    description="The signing secret (`whsec_...`) is in this answer only. The URL must be "
    "https and its host must resolve to public addresses only (422 `unsafe-webhook-url` "
    "otherwise); `event_types` are event types or globs (`order.*`).",
    tags=_TAGS,
    body=schemas.NewEndpointBody,
    responses={201: schemas.IssuedEndpointView},
    errors=(400, 422),
)
async def create_endpoint(request: Request) -> Response:
    body = await read_json(request, schemas.NewEndpointBody)
    issued = await container(request).webhooks.create(
        principal_of(request),
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        ctx=request_context(request),
    )
    return JSONResponse(
        schemas.issued_view(issued.endpoint, issued.secret),
        status_code=201,
        headers={**_NO_STORE, "location": f"/v1/webhooks/{issued.endpoint.id}"},
    )


@api(
    summary="List webhook endpoints",
    description="Oldest first, keyset pagination (`limit`, `cursor`).",
    tags=_TAGS,
    query=schemas.EndpointQuery,
    responses={200: schemas.EndpointList},
    errors=(400,),
)
async def list_endpoints(request: Request) -> Response:
    query = read_query(request, schemas.EndpointQuery)
    services = container(request)
    after = services.cursors.decode(_LIST_SCOPE, query.cursor) if query.cursor else None
    rows = await services.webhooks.page(after=after, limit=query.limit + 1)
    return paged_response(
        request,
        rows,
        limit=query.limit,
        cursors=services.cursors,
        scope=_LIST_SCOPE,
        position=lambda e: (e.created_at, e.id),
        view=schemas.endpoint_view,
    )


@api(
    summary="One webhook endpoint",
    tags=_TAGS,
    responses={200: schemas.EndpointView},
    errors=(404,),
)
async def get_endpoint(request: Request) -> Response:
    endpoint = await container(request).webhooks.get(path_id(request, "endpoint_id", _NO_ENDPOINT))
    return JSONResponse(schemas.endpoint_view(endpoint))


@api(
    summary="Change a webhook endpoint",
    description="Any of `url`, `event_types`, `description`, `enabled`. Enabling an endpoint "
    "the worker disabled for failing clears its failure record.",
    tags=_TAGS,
    body=schemas.EndpointPatch,
    responses={200: schemas.EndpointView},
    errors=(400, 404, 422),
)
async def patch_endpoint(request: Request) -> Response:
    endpoint_id = path_id(request, "endpoint_id", _NO_ENDPOINT)
    body = await read_json(request, schemas.EndpointPatch)
    changes = EndpointChanges(body.url, body.description, body.event_types, body.enabled)
    endpoint = await container(request).webhooks.update(
        principal_of(request), endpoint_id, changes, request_context(request)
    )
    return JSONResponse(schemas.endpoint_view(endpoint))


@api(
    summary="Delete a webhook endpoint",
    description="Its deliveries go with it.",
    tags=_TAGS,
    responses={204: None},
    errors=(404,),
)
async def delete_endpoint(request: Request) -> Response:
    await container(request).webhooks.delete(
        principal_of(request),
        path_id(request, "endpoint_id", _NO_ENDPOINT),
        request_context(request),
    )
    return Response(status_code=204)


@api(
    summary="Rotate a webhook endpoint's signing secret",
    description="Returns the new secret. Until `previous_secret_valid_until` every message is "
    "signed with both secrets (two signatures in `webhook-signature`), so receivers can switch "
    "without losing any.",
    tags=_TAGS,
    responses={200: schemas.IssuedEndpointView},
    errors=(404,),
)
async def rotate_secret(request: Request) -> Response:
    issued = await container(request).webhooks.rotate(
        principal_of(request),
        path_id(request, "endpoint_id", _NO_ENDPOINT),
        request_context(request),
    )
    return JSONResponse(schemas.issued_view(issued.endpoint, issued.secret), headers=_NO_STORE)


@api(
    summary="Send a test message",
    description="Queues a `webhook.ping` message for the endpoint; follow it in its deliveries.",
    tags=_TAGS,
    responses={202: schemas.PingView},
    errors=(404, 409),
)
async def ping_endpoint(request: Request) -> Response:
    delivery_id = await container(request).webhooks.ping(
        path_id(request, "endpoint_id", _NO_ENDPOINT)
    )
    return JSONResponse(schemas.PingView(delivery_id), status_code=202)


@api(
    summary="List an endpoint's deliveries",
    description="Newest first, keyset pagination; each with its attempts (start, latency, "
    "outcome, response status, error).",
    tags=_TAGS,
    query=schemas.DeliveryQuery,
    responses={200: schemas.DeliveryList},
    errors=(400, 404),
)
async def list_deliveries(request: Request) -> Response:
    endpoint_id = path_id(request, "endpoint_id", _NO_ENDPOINT)
    query = read_query(request, schemas.DeliveryQuery)
    services = container(request)
    scope = f"webhook-deliveries:{endpoint_id}"
    before = services.cursors.decode(scope, query.cursor)[1] if query.cursor else None
    rows = await services.webhooks.deliveries(endpoint_id, before=before, limit=query.limit + 1)
    return paged_response(
        request,
        rows,
        limit=query.limit,
        cursors=services.cursors,
        scope=scope,
        position=lambda r: (r.delivery.created_at, r.delivery.id),
        view=schemas.delivery_view,
    )


@api(
    summary="Send a delivery again",
    description="From the start of the retry schedule, under the same `webhook-id`.",
    tags=_TAGS,
    responses={202: schemas.DeliveryView},
    errors=(404, 409),
)
async def redeliver(request: Request) -> Response:
    endpoint_id = path_id(request, "endpoint_id", _NO_ENDPOINT)
    delivery_id = path_id(request, "delivery_id", "No such delivery.")
    record = await container(request).webhooks.redeliver(endpoint_id, delivery_id)
    return JSONResponse(schemas.delivery_view(record), status_code=202)
