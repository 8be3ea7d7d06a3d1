"""HTTP in/out for API keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.apikeys import schemas
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.context import request_context
from server.web.pagination import paged_response
from server.web.responses import JSONResponse, path_text, read_json, read_query
from server.web.state import container

_LIST_SCOPE = "api-keys"
_NO_STORE = {"cache-control": "no-store"}


@api(
    summary="Create an API key",
    description="The secret is in this answer only. Scopes must be permissions you hold; the "
    "key never grants more than its owner has at the time it is used.",
    tags=("api-keys",),
    body=schemas.NewKeyBody,
    responses={201: schemas.IssuedKeyView},
    errors=(400, 422),
)
async def create_key(request: Request) -> Response:
    body = await read_json(request, schemas.NewKeyBody)
    issued = await container(request).api_keys.create(
        principal_of(request),
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        rate_tier=body.rate_tier,
        ctx=request_context(request),
    )
    view = schemas.issued_view(issued.key, issued.secret)
    return JSONResponse(
        view, status_code=201, headers={**_NO_STORE, "location": f"/v1/api-keys/{view.id}"}
    )


@api(
    summary="List API keys",
    description="Your keys; with `apikeys:write`, `user_id=` or `all=true` lists other people's.",
    tags=("api-keys",),
    query=schemas.KeyQuery,
    responses={200: schemas.KeyList},
    errors=(400, 422),
)
async def list_keys(request: Request) -> Response:
    query = read_query(request, schemas.KeyQuery)
    services = container(request)
    after = services.cursors.decode_text(_LIST_SCOPE, query.cursor) if query.cursor else None
    rows = await services.api_keys.page(
        principal_of(request),
        owner=query.user_id,
        every_owner=query.all,
        after=after,
        limit=query.limit + 1,
    )
    return paged_response(
        request,
        rows,
        limit=query.limit,
        cursors=services.cursors,
        scope=_LIST_SCOPE,
        position=lambda k: (k.created_at, k.id),
        view=schemas.key_view,
    )


@api(summary="One API key", tags=("api-keys",), responses={200: schemas.KeyView}, errors=(404,))
async def get_key(request: Request) -> Response:
    key = await container(request).api_keys.get(
        principal_of(request), path_text(request, "key_id", "No such API key.")
    )
    return JSONResponse(schemas.key_view(key))


@api(
    summary="Revoke an API key",
    description="Every replica refuses it within a second. The key is revoked, not erased: "
    "`GET /v1/api-keys/{key_id}` and the list still show it, with `revoked_at` set, for the "
    "audit trail; it never authenticates again.",
    tags=("api-keys",),
    responses={204: None},
    errors=(404,),
)
async def revoke_key(request: Request) -> Response:
    await container(request).api_keys.revoke(
        principal_of(request),
        path_text(request, "key_id", "No such API key."),
        request_context(request),
    )
    return Response(status_code=204)


@api(
    summary="Rotate an API key's secret",
    description="Returns the new secret; the old one keeps working for the rotation grace "
    "period (`previous_key_valid_until`), then stops.",
    tags=("api-keys",),
    responses={200: schemas.IssuedKeyView},
    errors=(404,),
)
async def rotate_key(request: Request) -> Response:
    issued = await container(request).api_keys.rotate(
        principal_of(request),
        path_text(request, "key_id", "No such API key."),
        request_context(request),
    )
    return JSONResponse(schemas.issued_view(issued.key, issued.secret), headers=_NO_STORE)
