"""A global rate limiter: GCRA in Redis, spent locally from batch leases; see limiter.py."""

from server.ratelimit.headers import rate_limit_headers, ratelimit, ratelimit_policy, retry_after
from server.ratelimit.limiter import RateLimiter
from server.ratelimit.policy import Decision, Policy

__all__ = [
    "Decision",
    "Policy",
    "RateLimiter",
    "rate_limit_headers",
    "ratelimit",
    "ratelimit_policy",
    "retry_after",
]
