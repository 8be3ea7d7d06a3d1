"""Shapes of the role endpoints."""

from __future__ import annotations

from typing import Annotated

import msgspec

from server.auth.permissions import KNOWN_PERMISSIONS
from server.roles.repository import Role
from server.web.schemas import Strict

RoleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{1,31}$")]
# The service refuses a name outside KNOWN_PERMISSIONS (422 naming it); the enum documents it.
Permission = Annotated[str, msgspec.Meta(extra_json_schema={"enum": sorted(KNOWN_PERMISSIONS)})]
Permissions = Annotated[list[Permission], msgspec.Meta(max_length=64)]


class RoleView(msgspec.Struct):
    name: str
    description: str
    permissions: list[str]


class RoleList(msgspec.Struct):
    data: list[RoleView]


class NewRoleBody(Strict):
    name: RoleName
    permissions: Permissions
    description: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RolePatch(Strict):
    permissions: Permissions
    description: Annotated[str, msgspec.Meta(max_length=200)] | None = None


def role_view(role: Role) -> RoleView:
    return RoleView(role.name, role.description, list(role.permissions))
