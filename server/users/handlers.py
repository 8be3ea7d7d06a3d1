"""HTTP in/out for accounts: the owner's /users/me and the admin's /users."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.users import schemas
from server.users.repository import UserFilter
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.context import request_context
from server.web.pagination import paged_response
from server.web.responses import JSONResponse, path_id, path_text, read_json, read_query
from server.web.state import container

_LIST_SCOPE = "users"


@api(summary="This account", tags=("users",), responses={200: schemas.UserView})
async def get_me(request: Request) -> Response:
    user = await container(request).accounts.profile(principal_of(request))
    return JSONResponse(schemas.user_view(user))


@api(
    summary="Edit this account's profile",
    description="Only `display_name`; email, roles and status cannot be changed here.",
    tags=("users",),
    body=schemas.ProfilePatch,
    responses={200: schemas.UserView},
    errors=(400, 422),
)
async def patch_me(request: Request) -> Response:
    body = await read_json(request, schemas.ProfilePatch)
    accounts = container(request).accounts
    user = await accounts.update_profile(principal_of(request), body.display_name)
    return JSONResponse(schemas.user_view(user))


@api(
    summary="Delete this account",
    description="Needs the password in the body; ends every session. Wrong passwords count "
    "on the account's login backoff (429 + Retry-After while blocked).",
    tags=("users",),
    body=schemas.DeleteAccountBody,
    responses={204: None},
    errors=(400, 422, 429),
)
async def delete_me(request: Request) -> Response:
    body = await read_json(request, schemas.DeleteAccountBody)
    accounts = container(request).accounts
    await accounts.delete_account(principal_of(request), body.password, request_context(request))
    return Response(status_code=204)


@api(
    summary="List accounts",
    description="Keyset pagination (`limit`, `cursor`); filters `status`, `role`, `email_prefix`.",
    tags=("users",),
    query=schemas.UserQuery,
    responses={200: schemas.UserList},
    errors=(400, 422),
)
async def list_users(request: Request) -> Response:
    query = read_query(request, schemas.UserQuery)
    services = container(request)
    after = services.cursors.decode(_LIST_SCOPE, query.cursor) if query.cursor else None
    rows = await services.users_admin.page(
        after=after,
        where=UserFilter(query.status, query.role, query.email_prefix),
        limit=query.limit + 1,
    )
    return paged_response(
        request,
        rows,
        limit=query.limit,
        cursors=services.cursors,
        scope=_LIST_SCOPE,
        position=lambda u: (u.created_at, u.id),
        view=schemas.user_view,
    )


@api(summary="One account", tags=("users",), responses={200: schemas.UserView}, errors=(404,))
async def get_user(request: Request) -> Response:
    user = await container(request).users_admin.get(path_id(request, "user_id", "No such user."))
    return JSONResponse(schemas.user_view(user))


@api(
    summary="Edit an account",
    description="`display_name` and `status`; disabling ends every session of the account.",
    tags=("users",),
    body=schemas.AdminUserPatch,
    responses={200: schemas.UserView},
    errors=(400, 404, 409, 422),
)
async def patch_user(request: Request) -> Response:
    body = await read_json(request, schemas.AdminUserPatch)
    user = await container(request).users_admin.update(
        principal_of(request),
        path_id(request, "user_id", "No such user."),
        display_name=body.display_name,
        status=body.status,
        ctx=request_context(request),
    )
    return JSONResponse(schemas.user_view(user))


@api(summary="Grant a role", tags=("users",), responses={200: schemas.UserView}, errors=(404,))
async def grant_role(request: Request) -> Response:
    user = await container(request).users_admin.grant(
        principal_of(request),
        path_id(request, "user_id", "No such user."),
        path_text(request, "role", "No such role."),
        request_context(request),
    )
    return JSONResponse(schemas.user_view(user))


@api(summary="Remove a role", tags=("users",), responses={200: schemas.UserView}, errors=(404, 409))
async def revoke_role(request: Request) -> Response:
    user = await container(request).users_admin.revoke(
        principal_of(request),
        path_id(request, "user_id", "No such user."),
        path_text(request, "role", "No such role."),
        request_context(request),
    )
    return JSONResponse(schemas.user_view(user))
