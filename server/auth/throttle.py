"""Login throttling: per-account and per-address failure counters with exponential backoff.

The counters live in PostgreSQL (authoritative and shared by every replica). A block doubles
with each failure past the free ones and is capped. A stranger hammering someone's email blocks
only clients that have never logged in to the account: the owner's devices present a device
token and are counted on their own key (server/auth/device_tokens.py). The per-account counter
also takes the guesses a signed-in caller makes at the current password (password change,
account deletion), so a stolen session gets no more guesses than a login would.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from server.db.database import Connection
from server.db.sqlfiles import Queries
from server.web.errors import TooManyRequests


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int
    base_seconds: float
    cap_seconds: float
    forget_after_seconds: float


ACCOUNT_POLICY = ThrottlePolicy(5, 1.0, 300.0, 3600.0)
# A known device's logins (server/auth/device_tokens.py) count here instead of on the account.
DEVICE_POLICY = ThrottlePolicy(5, 1.0, 300.0, 3600.0)
ADDRESS_POLICY = ThrottlePolicy(20, 1.0, 900.0, 3600.0)


class LoginThrottled(TooManyRequests):
    slug = "login-throttled"
    title = "Too many failed logins"


class LoginThrottle:
    def __init__(self, queries: Queries) -> None:
        self._ensure = queries.sql("create_throttle_key")
        self._block = queries.sql("get_throttle_block_for_update")
        self._attempt = queries.sql("update_throttle_attempt")
        self._success = queries.sql("update_throttle_success")
        self._clear = queries.sql("delete_throttle")
        self._stale = queries.sql("delete_stale_throttles")

    async def attempt(
        self, conn: Connection, keys: list[tuple[str, ThrottlePolicy]], now: dt.datetime
    ) -> None:
        """Count this attempt against every key first; raise LoginThrottled (429 + Retry-After)
        if any key was already blocked. Counting before checking the password is what keeps
        a burst of concurrent guesses from all getting through. Run it in a transaction."""
        wait = 0.0
        for key, policy in keys:
            await conn.execute(self._ensure, key)
            blocked: dt.datetime | None = await conn.fetchval(self._block, key)
            await conn.execute(
                self._attempt,
                key,
                policy.free_failures,
                policy.base_seconds,
                policy.cap_seconds,
                policy.forget_after_seconds,
            )
            if blocked is not None:
                wait = max(wait, (blocked - now).total_seconds())
        if wait > 0:
            seconds = math.ceil(wait)
            raise LoginThrottled(
                f"Too many failed attempts; try again in {seconds} s.",
                headers={"retry-after": str(seconds)},
            )

    async def succeeded(self, conn: Connection, account: str, address: str) -> None:
        await self.forgive(conn, account)
        await conn.execute(self._success, address)

    async def forgive(self, conn: Connection, account: str) -> None:
        """The right password was given: the account's failures are forgotten."""
        await conn.execute(self._clear, account)

    async def forget_stale(self, conn: Connection) -> int:
        status = await conn.execute(
            self._stale,
            max(ACCOUNT_POLICY.forget_after_seconds, ADDRESS_POLICY.forget_after_seconds),
        )
        return int(status.rpartition(" ")[2])


def account_key(email: str) -> str:
    return "acct:" + email.strip().lower()


def address_key(ip: str) -> str:
    return "ip:" + ip
