"""rate_limit_headers renders from formats kept per policy: its bytes must stay those of the
draft's string renderers, for every value a decision can carry."""

from __future__ import annotations

import itertools

from server.ratelimit import Decision, rate_limit_headers, ratelimit, ratelimit_policy
from server.ratelimit.fallback import LocalGcra
from server.ratelimit.policy import Policy


def reference(decision: Decision) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"ratelimit-policy", ratelimit_policy(decision).encode()),
        (b"ratelimit", ratelimit(decision).encode()),
    ]
    if not decision.allowed:
        after = max(1, -int(-decision.retry_after_seconds // 1))
        headers.append((b"retry-after", str(after).encode()))
    return headers


def test_the_bytes_are_the_string_renderers() -> None:
    policies = (("read", 1200, 60.0), ("read-high", 12_000, 0.5), ("a.b_c", 1, 7))
    for allowed, (name, limit, window) in itertools.product((True, False), policies):
        for remaining, reset, retry in itertools.product(
            (0, 1, 9, 10, 99_999, 10**9),
            (0.0, 1e-6, 0.5, 1.0, 1.000001, 59.2, 3600.0),
            (0.0, 0.0002, 1.0, 2.000001, 30.0),
        ):
            decision = Decision(allowed, name, limit, window, remaining, reset, retry)
            assert rate_limit_headers(decision) == reference(decision), decision


def test_a_fallback_share_states_its_own_quota_beside_the_shared_one() -> None:
    policy = Policy("read", 6, 60.0)
    shared = Decision(True, "read", 6, 60.0, 5, 10.0, 0.0)
    local = LocalGcra(replicas=2, max_keys=10).decide("k", policy, 1000.0)
    # Cached per (name, quota, window): one policy's two quotas never share a rendering.
    assert dict(rate_limit_headers(shared))[b"ratelimit-policy"] == b'"read";q=6;w=60'
    assert dict(rate_limit_headers(local))[b"ratelimit-policy"] == b'"read";q=3;w=60'
    assert dict(rate_limit_headers(shared))[b"ratelimit-policy"] == b'"read";q=6;w=60'


def test_a_denial_always_says_retry_after_at_least_one_second() -> None:
    denied = Decision(False, "api", 100, 0.5, 0, 0.0004, 0.0)
    assert rate_limit_headers(denied)[-1] == (b"retry-after", b"1")
