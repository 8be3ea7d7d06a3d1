"""The msgspec base and field types every domain's schemas share."""

from __future__ import annotations

from typing import Annotated

import msgspec

from server.web.pagination import DEFAULT_LIMIT, MAX_LIMIT

__all__ = ["DEFAULT_LIMIT", "DisplayName", "PageLimit", "Password", "Strict"]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    """Input bodies and queries: a field the server does not know is a 400, not ignored."""


# A list's ?limit=, capped (the rows a page may hold); the default is DEFAULT_LIMIT.
PageLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
# A password being checked (login, account deletion); the length rules of one being set are
# the password policy's (auth's NewPassword).
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
DisplayName = Annotated[str, msgspec.Meta(max_length=100)]
