"""The per-process limit used while Redis is absent or failing: each replica admits its share,
``limit / replicas`` with ``burst / replicas``, by the same GCRA the Redis script runs."""

from __future__ import annotations

from itertools import islice

from server.ratelimit.gcra import step
from server.ratelimit.policy import Decision, Policy


class LocalGcra:
    def __init__(self, *, replicas: int, max_keys: int) -> None:
        self.replicas = replicas
        self.max_keys = max_keys
        self._tats: dict[tuple[str, str], int] = {}
        self._shares: dict[Policy, tuple[int, int]] = {}  # policy -> (interval us, capacity)

    def share(self, policy: Policy) -> tuple[int, int]:
        found = self._shares.get(policy)
        if found is None:
            capacity = max(1, policy.capacity // self.replicas)
            found = self._shares[policy] = (policy.interval_us * self.replicas, capacity)
        return found

    def decide(self, key: str, policy: Policy, now: float) -> Decision:
        interval, capacity = self.share(policy)
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
            limit=policy.limit,
            window_seconds=policy.window_seconds,
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
