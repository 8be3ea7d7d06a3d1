"""Shapes of the user endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from server.users.repository import User
from server.web.schemas import DEFAULT_LIMIT, DisplayName, PageLimit, Password, Strict

Status = Literal["active", "disabled"]


class UserView(msgspec.Struct):
    id: int
    email: str
    display_name: str
    status: str
    roles: list[str]
    email_verified: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class UserList(msgspec.Struct):
    data: list[UserView]
    next_cursor: str | None


class ProfilePatch(Strict):
    """The fields an owner may change: anything else (email, roles, status) is a 422."""

    display_name: DisplayName


class DeleteAccountBody(Strict):
    password: Password


class AdminUserPatch(Strict):
    display_name: DisplayName | None = None
    status: Status | None = None


class UserQuery(Strict):
    limit: PageLimit = DEFAULT_LIMIT
    cursor: str | None = None
    status: Literal["active", "disabled", "pending"] | None = None
    role: str | None = None
    email_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=254)] | None = None


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        status=user.status,
        roles=list(user.roles),
        email_verified=user.email_verified_at is not None,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )
