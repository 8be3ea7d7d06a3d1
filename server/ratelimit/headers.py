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


Header = tuple[bytes, bytes]

# Per policy as a decision states it (name, quota, window): the RateLimit-Policy header, the
# same for every request of the policy, the RateLimit header's bytes format and that format's
# prefix (the quoted name and "r="): a request fills in two integers instead of formatting a
# str through three helpers and encoding it; a lease (leases.py) fills in t once per second.
_rendered: dict[tuple[str, int, float], tuple[Header, bytes, bytes]] = {}


def prepared(name: str, limit: int, window: float) -> tuple[Header, bytes, bytes]:
    """RateLimit-Policy's header, RateLimit's format (r and t left as %d) and its prefix."""
    found = _rendered.get((name, limit, window))
    if found is None:
        found = _rendered[name, limit, window] = _render(name, limit, window)
    return found


def _render(name: str, limit: int, window: float) -> tuple[Header, bytes, bytes]:
    stated = Decision(True, name, limit, window, 0, 0.0, 0.0)
    policy = (b"ratelimit-policy", ratelimit_policy(stated).encode())
    # The name is a plain token (Policy checks it); escaped anyway, as it becomes a format.
    prefix = f'"{name}";r='.encode().replace(b"%", b"%%")
    return policy, prefix + b"%d;t=%d", prefix


def ratelimit_format_at(prefix: bytes, reset: int) -> bytes:
    """RateLimit's format with t filled in, r left as %d: what a lease keeps while t holds.
    ``reset`` is t as rendered: whole seconds, rounded up, at least 0."""
    return prefix + b"%%d;t=%d" % reset


def rate_limit_headers(decision: Decision) -> list[Header]:
    """The two (three on a denial) as raw ASGI headers, ready to append to a response's."""
    # Unpacked at once: 3.11 does not specialize a NamedTuple's field access (a type lookup and
    # a descriptor call each); one unpacking of a tuple it does.
    allowed, name, limit, window, remaining, reset_seconds, retry_seconds = decision
    found = _rendered.get((name, limit, window))
    if found is None:
        found = _rendered[name, limit, window] = _render(name, limit, window)
    policy, ratelimit_format, _ = found
    # The same bytes as ratelimit(decision).encode(); _seconds inlined, without max(), whose
    # argument parsing cost more than the comparison.
    reset = math.ceil(reset_seconds)
    value = ratelimit_format % (remaining, reset if reset > 0 else 0)
    if allowed:
        return [policy, (b"ratelimit", value)]
    after = max(1, _seconds(retry_seconds))  # as retry_after(decision)
    return [policy, (b"ratelimit", value), (b"retry-after", b"%d" % after)]
