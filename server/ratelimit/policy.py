"""What a limit is (Policy) and what one request was told (Decision).

A Policy is GCRA's two parameters: tokens drip in one per ``window_seconds / limit`` and the
bucket holds ``burst`` of them. ``burst`` defaults to ``limit``: an idle client may spend a
whole window's quota at once (a page load, a batch job), as the ``RateLimit`` header promises
when it says ``r=<limit>``, and then gets one request per emission interval. That is still no
window-edge burst: after spending the bucket a client gets ``t / interval`` more requests in
the next ``t`` seconds, never a fresh quota because a clock crossed a boundary, so any span of
``t`` seconds admits at most ``burst + t / interval``. A smaller burst makes traffic smoother;
``burst=1`` spaces every request by the interval.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

# The name goes into Redis keys, metric labels and a quoted header string: keep it plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_RATE = 1_000_000  # tokens per second: the emission interval is counted in whole microseconds
_MAX_HORIZON_US = 2**50  # burst * interval: Lua's doubles stay exact (~35 years of bucket)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    limit: int
    window_seconds: float
    burst: int | None = None
    # Derived: the emission interval, rounded up so the limit is never exceeded by rounding.
    interval_us: int = field(init=False, repr=False, compare=False)
    capacity: int = field(init=False, repr=False, compare=False)  # the effective burst

    def __post_init__(self) -> None:
        errors = []
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            errors.append("name must be 1-64 of A-Z a-z 0-9 _ . - (starting alphanumeric)")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            errors.append("limit must be an int of at least 1")
        window = self.window_seconds
        if isinstance(window, bool) or not isinstance(window, int | float):
            errors.append("window_seconds must be a number")
        elif not (math.isfinite(window) and window > 0):
            errors.append("window_seconds must be positive and finite")
        burst = self.burst
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)):
            errors.append("burst must be an int or None")
        elif burst is not None and burst < 1:
            errors.append("burst must be at least 1")
        if not errors:
            if self.limit / window > MAX_RATE:
                errors.append(f"limit / window_seconds must be at most {MAX_RATE} per second")
            else:
                # From the decimal the user wrote: 0.1 * 1e6 / 10 in floats is 10000.000000000002.
                interval = math.ceil(Fraction(repr(window)) * 1_000_000 / self.limit)
                capacity = self.limit if burst is None else burst
                if capacity * interval > _MAX_HORIZON_US:
                    errors.append("burst * window_seconds / limit is too long a horizon")
                object.__setattr__(self, "interval_us", interval)
                object.__setattr__(self, "capacity", capacity)
        if errors:
            raise ValueError(f"invalid rate limit policy {self.name!r}: " + "; ".join(errors))


class Decision(NamedTuple):
    """The answer for one request, with what its rate-limit headers need. A NamedTuple, not a
    frozen dataclass: one is made per request, and a frozen dataclass costs five times more.

    ``remaining``: requests the client may still make at once; ``reset_seconds``: until its
    bucket is full again; ``retry_after_seconds``: 0 when allowed, else never earlier than the
    moment a token is there (the limiter may round it up, never down).
    """

    allowed: bool
    policy: str
    limit: int
    window_seconds: float
    remaining: int
    reset_seconds: float
    retry_after_seconds: float
