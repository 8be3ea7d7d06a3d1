"""One key's share of the global limit held in this process: tokens leased from Redis in a
batch, spent one per request with no I/O, and what Redis last said about the key."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from server.ratelimit.gcra import Grant
from server.ratelimit.headers import Header, prepared, ratelimit_format_at
from server.ratelimit.policy import Decision, Policy

_MIN_SPAN = 0.001  # seconds: requests seen "at once" count as this far apart when sizing
# Roomy leases of at least this many tokens are renewed ahead (Lease.refilled), at this share
# of their time to live. 16 left keys at 20 requests a second (1,000 over 50 keys) lapsing
# whenever a lease came out under it: 10 requests a second still waited, against 58 without
# renewing ahead; a key seen less often costs a Redis call per request or two anyway.
_AHEAD_MIN = 4
_AHEAD_SHARE = 0.75
# Decision(...) runs the NamedTuple's generated __new__, a Python function (a frame and 13
# bytecodes a request); a leased request builds its decision from a plain tuple in C instead.
_spent: Callable[[tuple[bool, str, int, float, int, float, float]], Decision] = partial(
    tuple.__new__, Decision
)


class Lease:
    """Mutable, per process, touched only from the event loop."""

    __slots__ = (
        "counts",
        "demand",
        "denied_until",
        "expires",
        "full_at",
        "low",
        "policy",
        "policy_header",
        "prefix",
        "ratelimit_format",
        "refresh_at",
        "remaining",
        "reset_above",
        "reset_upto",
        "roomy",
        "since",
        "tokens",
    )

    def __init__(self, counts: list[int], now: float) -> None:
        self.counts = counts  # the policy's [allowed, denied] metric pair
        self.tokens = 0  # leased, not yet spent
        self.expires = 0.0  # leased tokens are void from then: none can be hoarded
        self.denied_until = 0.0  # Redis said no token before then
        self.remaining = 0  # what Redis had left after our last grant
        self.full_at = now  # when Redis' bucket for the key is full again
        self.demand = 0  # requests since the last refill started
        self.since: float | None = None  # when it started
        self.roomy = False  # the last lease was sized for a key far from its limit
        # RateLimiter.admit asks for the next lease ahead, with no request waiting on it, once
        # a token spent leaves ``low`` or fewer, or at ``refresh_at`` (see ``refilled``).
        self.low = -1
        self.refresh_at = math.inf
        # What RateLimiter.admit answers with, kept for the policy it last answered: the
        # RateLimit-Policy header, and the RateLimit format with t filled in (r left as %d),
        # which holds while full_at - now is in (reset_above, reset_upto]: ceil() of it is t.
        # Empty at first, so the first admission prepares them.
        self.policy: Policy | None = None
        self.policy_header: Header = (b"", b"")
        self.prefix = b""
        self.ratelimit_format = b""
        self.reset_above = self.reset_upto = 0.0

    def prepare(self, policy: Policy) -> None:
        """Keep the headers of ``policy`` for RateLimiter.admit, which answers from them."""
        self.policy = policy
        self.policy_header, _, self.prefix = prepared(
            policy.name, policy.limit, policy.window_seconds
        )
        self.reset_above = self.reset_upto = 0.0  # t again for this prefix

    def reset_moved(self, reset: float) -> None:
        """t for this ``full_at - now``: RateLimiter.admit calls it once t has changed."""
        # As rate_limit_headers renders a Decision's reset (clamped at 0, rounded up): t when
        # t - 1 < reset <= t, and 0 for any reset <= 0. Integers this small are exact floats.
        if reset > 0.0:
            t = math.ceil(reset)
            self.reset_above, self.reset_upto = t - 1.0, float(t)
        else:
            t = 0
            self.reset_above, self.reset_upto = -math.inf, 0.0
        self.ratelimit_format = ratelimit_format_at(self.prefix, t)

    def take(self, policy: Policy, now: float) -> Decision | None:
        """A local decision (a token, or a denial Redis already gave), or None: ask Redis."""
        if self.tokens and now < self.expires:
            self.tokens -= 1
            self.counts[0] += 1
            reset = self.full_at - now  # max(0.0, ...) without max()'s argument parsing
            return _spent(
                (
                    True,
                    policy.name,
                    policy.limit,
                    policy.window_seconds,
                    self.remaining + self.tokens,
                    reset if reset > 0.0 else 0.0,
                    0.0,
                )
            )
        if now < self.denied_until:
            self.counts[1] += 1
            return Decision(
                False,
                policy.name,
                policy.limit,
                policy.window_seconds,
                0,
                max(0.0, self.full_at - now),
                self.denied_until - now,
            )
        return None

    def wanted(
        self, now: float, policy: Policy, *, lease_seconds: float, roomy_seconds: float, cap: int
    ) -> int:
        """Tokens for ``lease_seconds`` of this key's traffic here since the last refill.

        A key seen once a second asks for 1 (a call per request, as without leasing); one seen
        a thousand times a second asks for 50 at 50 ms (a call per 50 ms). Never more than the
        policy itself mints in ``lease_seconds``: what a lease leaves unspent when it expires is
        lost to everyone, and that bounds the loss to a sliver of the limit."""
        since, self.since, demand, self.demand = self.since, now, self.demand, 0
        self.roomy = False
        if since is None:
            return 1  # no history: a key's first request may well be its only one
        rate = demand / max(now - since, _MIN_SPAN)
        if self.remaining * 2 >= policy.capacity:
            # Far from the limit (Redis had half the bucket left): lease ``roomy_seconds`` of
            # traffic, at most half of what is left. Leases only ever take real tokens, so this
            # can never admit too much; what lapses unspent leaves at least a quarter of the
            # bucket, and near the limit the short leases below take over again. Many keys at
            # a few hundred requests a second each then cost a Redis call a second apiece.
            self.roomy = True
            return max(1, min(cap, self.remaining // 2, math.ceil(rate * roomy_seconds)))
        minted = int(lease_seconds * 1_000_000) // policy.interval_us
        cap = max(1, min(cap, policy.capacity, minted))
        return max(1, min(cap, math.ceil(rate * lease_seconds)))

    def refilled(
        self,
        grant: Grant,
        policy: Policy,
        *,
        wanted: int,
        sent: float,
        received: float,
        ttl: float,
        hold_seconds: float,
    ) -> None:
        """Store Redis' answer. Times count from our side of the call: a lease from when it was
        asked for (never longer than ``ttl``), a denial from when the answer was in (never
        shorter than Redis' retry-after). Tokens of the last lease still unspent and unexpired
        (a lease asked for ahead, while they were being spent) are kept with the new ones.

        A roomy lease of ``_AHEAD_MIN`` tokens or more is renewed ahead: the request that
        leaves a quarter of it, or comes ``_AHEAD_SHARE`` of ``ttl`` after it was asked for,
        is admitted from it and starts the next refill, so a key in steady use never has a
        request wait on Redis. Without that each such key's lease lapsed once a second and
        the requests that came meanwhile waited for the refill; keys leased together lapsed
        together, and in the open-model run of the warm read (50 keys, 4,500 requests a
        second) those waits were 500 of the 510 requests that took over 10 ms in the app.
        Near the limit leases are not renewed ahead: a lease asked for early can lapse unspent,
        and there that would cost the key tokens it is owed."""
        left = self.tokens if received < self.expires else 0
        self.tokens = grant.granted + left
        self.expires = sent + ttl
        if self.roomy and grant.granted >= _AHEAD_MIN:
            self.low = grant.granted // 4
            self.refresh_at = sent + ttl * _AHEAD_SHARE
        else:
            self.low, self.refresh_at = -1, math.inf
        self.remaining = grant.remaining
        self.full_at = received + grant.reset_us / 1_000_000
        if grant.retry_us:
            # Out of tokens: stay out until the batch we asked for has dripped in, by at most
            # hold_seconds. A saturated hot key then costs a call per hold_seconds instead of
            # one per token, and the wait stays within the burst (wanted <= capacity), so
            # nothing drips away unused. The reported retry-after is this later moment.
            hold_us = min((wanted - 1) * policy.interval_us, round(hold_seconds * 1_000_000))
            self.denied_until = received + (grant.retry_us + hold_us) / 1_000_000
        else:
            self.denied_until = 0.0

    def idle(self, now: float) -> bool:
        return now >= self.expires and now >= self.denied_until
