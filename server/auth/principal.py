"""Who is calling: the one type the rest of the code sees, whatever the credential was."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    session_id: str | None
    roles: tuple[str, ...]
    permissions: frozenset[str]
    issued_at: int
    api_key_id: str | None = None
    rate_tier: str = "standard"
    # Derived: whose rate-limit budget this caller spends (server/ratelimit/classes.py), an
    # API key's own or its user's. Built here because principals are kept per credential, so
    # a request no longer formats the string.
    rate_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = self.api_key_id
        object.__setattr__(
            self, "rate_key", "user:" + str(self.user_id) if key is None else "key:" + key
        )

    def can(self, permission: str) -> bool:
        return permission in self.permissions
