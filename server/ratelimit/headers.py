"""Rate-limit response headers, after draft-ietf-httpapi-ratelimit-headers (-08 and later):

    RateLimit-Policy: "api";q=100;w=60
    RateLimit: "api";r=42;t=7
    Retry-After: 3            (on a denial only)

The draft wants whole seconds: ``w``, ``t`` and Retry-After are rounded up, so a client that
waits what it was told never comes back early. Policy names are plain tokens (see Policy), so
the quoted strings need no escaping.
"""

from __future__ import annotations

import math

from server.ratelimit.policy import Decision


def _seconds(value: float) -> int:
    return max(0, math.ceil(value))


def ratelimit_policy(decision: Decision) -> str:
    window = max(1, _seconds(decision.window_seconds))
    return f'"{decision.policy}";q={decision.limit};w={window}'


def ratelimit(decision: Decision) -> str:
    return f'"{decision.policy}";r={decision.remaining};t={_seconds(decision.reset_seconds)}'


def retry_after(decision: Decision) -> str | None:
    """Integer seconds for a denial (at least 1), None when the request was allowed."""
    if decision.allowed:
        return None
    return str(max(1, _seconds(decision.retry_after_seconds)))


_policy_headers: dict[tuple[str, int, float], tuple[bytes, bytes]] = {}


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """The two (three on a denial) as raw ASGI headers, ready to append to a response's."""
    # The policy header is the same for every request of a policy: rendered once.
    ident = (decision.policy, decision.limit, decision.window_seconds)
    policy = _policy_headers.get(ident)
    if policy is None:
        policy = _policy_headers[ident] = (
            b"ratelimit-policy",
            ratelimit_policy(decision).encode(),
        )
    headers = [policy, (b"ratelimit", ratelimit(decision).encode())]
    if (after := retry_after(decision)) is not None:
        headers.append((b"retry-after", after.encode()))
    return headers
