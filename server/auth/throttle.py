"""Login throttling: per-account and per-address failure counters with exponential backoff.

The counters live in PostgreSQL (authoritative and shared by every replica). A block doubles
with each failure past the free ones and is capped, so a stranger hammering someone's email
can delay that person's login by minutes at most, never lock them out.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from server.db import Connection
from server.errors import TooManyRequests
from server.sqlfiles import Queries


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int
    base_seconds: float
    cap_seconds: float
    forget_after_seconds: float


ACCOUNT_POLICY = ThrottlePolicy(5, 1.0, 300.0, 3600.0)
ADDRESS_POLICY = ThrottlePolicy(20, 1.0, 900.0, 3600.0)


class LoginThrottled(TooManyRequests):
    slug = "login-throttled"
    title = "Too many failed logins"


class LoginThrottle:
    def __init__(self, queries: Queries) -> None:
        self._get = queries.sql("get_throttle")
        self._fail = queries.sql("update_throttle_failure")
        self._clear = queries.sql("delete_throttle")

    async def check(self, conn: Connection, keys: list[str], now: dt.datetime) -> None:
        """Raise LoginThrottled (429 + Retry-After) while any key is blocked."""
        wait = 0.0
        for key in keys:
            record = await conn.fetchrow(self._get, key)
            if record is not None and record["blocked_until"] is not None:
                wait = max(wait, (record["blocked_until"] - now).total_seconds())
        if wait > 0:
            seconds = math.ceil(wait)
            raise LoginThrottled(
                f"Too many failed attempts; try again in {seconds} s.",
                headers={"retry-after": str(seconds)},
            )

    async def fail(self, conn: Connection, key: str, policy: ThrottlePolicy) -> None:
        await conn.execute(
            self._fail,
            key,
            policy.free_failures,
            policy.base_seconds,
            policy.cap_seconds,
            policy.forget_after_seconds,
        )

    async def clear(self, conn: Connection, key: str) -> None:
        await conn.execute(self._clear, key)


def account_key(email: str) -> str:
    return "acct:" + email.strip().lower()


def address_key(ip: str) -> str:
    return "ip:" + ip
