"""The per-process limit used while Redis is absent or failing: each replica admits its share,
``limit / replicas`` with ``burst / replicas``, by the same GCRA the Redis script runs. Its
decisions name that share, so the RateLimit-Policy header states the quota enforced."""

from __future__ import annotations

from itertools import islice
from typing import NamedTuple

from server.ratelimit.gcra import step
from server.ratelimit.policy import Decision, Policy


class Share(NamedTuple):
    interval_us: int
    capacity: int
    # The quota as the headers state it: limit / replicas a window, or, when that is under one,
    # one request a window stretched to match, so a client that keeps to it is never refused.
    limit: int
    window_seconds: float


class LocalGcra:
    def __init__(self, *, replicas: int, max_keys: int) -> None:
        self.replicas = replicas
        self.max_keys = max_keys
        self._tats: dict[tuple[str, str], int] = {}
        self._shares: dict[Policy, Share] = {}

    def share(self, policy: Policy) -> Share:
        found = self._shares.get(policy)
        if found is None:
            replicas = self.replicas
            capacity = max(1, policy.capacity // replicas)
            if policy.limit >= replicas:
                limit, window = policy.limit // replicas, policy.window_seconds
            else:
                limit, window = 1, policy.window_seconds * replicas / policy.limit
            found = self._shares[policy] = Share(
                policy.interval_us * replicas, capacity, limit, window
            )
        return found

    def decide(self, key: str, policy: Policy, now: float) -> Decision:
        interval, capacity, limit, window = self.share(policy)
        now_us = round(now * 1_000_000)
        ident = (policy.name, key)
        tats = self._tats
        tat, grant = step(tats.get(ident, now_us), now_us, interval, capacity, 1)
        if grant.granted:
            if ident not in tats and len(tats) >= self.max_keys:
                self.sweep(now)
                for oldest in list(islice(tats, max(1, self.max_keys // 100))):
                    del tats[oldest]
            tats[ident] = tat
        return Decision(
            allowed=grant.granted == 1,
            policy=policy.name,
            limit=limit,
            window_seconds=window,
            remaining=grant.remaining,
            reset_seconds=grant.reset_us / 1_000_000,
            retry_after_seconds=grant.retry_us / 1_000_000,
        )

    def sweep(self, now: float) -> None:
        """Forget keys whose bucket is full again: an absent key means the same."""
        now_us = round(now * 1_000_000)
        for ident in [ident for ident, tat in self._tats.items() if tat <= now_us]:
            del self._tats[ident]

    def clear(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        return len(self._tats)
