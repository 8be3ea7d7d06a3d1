"""create-admin keys the account by the normalised address, as registration does."""

from __future__ import annotations

import secrets

import asyncpg
import pytest
from structlog.typing import FilteringBoundLogger

from server.commands.tasks import create_admin_command
from server.runtime.settings import Settings


async def test_create_admin_stores_the_normalised_address(
    settings: Settings, logger: FilteringBoundLogger, db: asyncpg.Connection
) -> None:
    local = f"root-{secrets.token_hex(4)}"
    password = "long enough passphrase " + secrets.token_hex(4)
    typed = f"\uff32{local[1:].upper()}@Example.COM"  # a full-width R, then upper case
    assert await create_admin_command(settings, logger, typed, password) == 0
    email = f"{local}@example.com"
    row = await db.fetchrow("SELECT email, roles FROM users WHERE email_normalized = $1", email)
    assert row is not None
    assert (row["email"], row["roles"]) == (email, ["admin"])
    with pytest.raises(SystemExit, match="already exists"):
        await create_admin_command(settings, logger, email, password)
    with pytest.raises(SystemExit, match="email is not accepted"):
        await create_admin_command(settings, logger, "root@exa\u200emple.com", password)
