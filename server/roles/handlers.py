"""HTTP in/out for roles."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.roles import schemas
from server.web.access import principal_of
from server.web.apidoc import api
from server.web.context import request_context
from server.web.responses import JSONResponse, path_text, read_json
from server.web.state import container


@api(summary="List roles and their permissions", tags=("roles",), responses={200: schemas.RoleList})
async def list_roles(request: Request) -> Response:
    roles = await container(request).roles.all()
    return JSONResponse({"data": [schemas.role_view(r) for r in roles]})


@api(
    summary="One role and its permissions",
    description="What a role's creation names in `Location`.",
    tags=("roles",),
    responses={200: schemas.RoleView},
    errors=(404,),
)
async def get_role(request: Request) -> Response:
    role = await container(request).roles.get(path_text(request, "name", "No such role."))
    return JSONResponse(schemas.role_view(role))


@api(
    summary="Create a role",
    description="The role may hold only permissions the caller holds (else 403).",
    tags=("roles",),
    body=schemas.NewRoleBody,
    responses={201: schemas.RoleView},
    errors=(400, 409, 422),
)
async def create_role(request: Request) -> Response:
    body = await read_json(request, schemas.NewRoleBody)
    role = await container(request).roles.create(
        principal_of(request),
        body.name,
        body.description,
        body.permissions,
        request_context(request),
    )
    return JSONResponse(
        schemas.role_view(role), status_code=201, headers={"location": f"/v1/roles/{role.name}"}
    )


@api(
    summary="Set a role's permissions",
    description="The caller must hold every permission the role has before and after the "
    "change (else 403). The admin role cannot lose a permission (409 role-protected).",
    tags=("roles",),
    body=schemas.RolePatch,
    responses={200: schemas.RoleView},
    errors=(400, 404, 409, 422),
)
async def patch_role(request: Request) -> Response:
    body = await read_json(request, schemas.RolePatch)
    role = await container(request).roles.update(
        principal_of(request),
        path_text(request, "name", "No such role."),
        body.permissions,
        body.description,
        request_context(request),
    )
    return JSONResponse(schemas.role_view(role))
