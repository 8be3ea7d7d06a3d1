"""Who is calling: the one type the rest of the code sees, whatever the credential was."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    session_id: str | None
    roles: tuple[str, ...]
    permissions: frozenset[str]
    issued_at: int
    api_key_id: str | None = None
    rate_tier: str = "standard"

    def can(self, permission: str) -> bool:
        return permission in self.permissions
