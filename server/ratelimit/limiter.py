"""The global rate limiter: one limit across every replica, without a Redis call per request.

Each process leases tokens from Redis in batches sized to its own recent traffic on the key
(``lease_seconds`` of it) and spends them locally: a request on a key with tokens is a dict
lookup and a decrement, answered synchronously. A key out of tokens makes one Redis call however
many requests wait for it; a key Redis refused is refused locally until Redis' retry-after.
Leases expire after ``lease_ttl``, so no process hoards what it does not use.

Without Redis (absent, down or slow) each process limits on its own at ``limit / replicas``
and pauses Redis attempts for a second after a failure, so an outage costs no timeout per
request. One probe at a time finds Redis again, and the limiter switches back by itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from itertools import islice

from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.ratelimit.fallback import LocalGcra
from server.ratelimit.gcra import RedisGcra
from server.ratelimit.headers import Header
from server.ratelimit.leases import Lease
from server.ratelimit.metrics import RateLimitMetrics
from server.ratelimit.policy import Decision, Policy
from server.runtime import background
from server.runtime.pubsub import error_name
from server.runtime.redis_link import RedisLink

_REDIS_PAUSE = 1.0  # after a Redis failure, decide locally this long before trying again
_SWEEP_SECONDS = 1.0
_ROOMY_SECONDS = 1.0  # lease length for keys far from their limit (see Lease.wanted)
_MAX_ROUNDS = 16  # refills a waiter sees others drain before it settles for the local share

Ident = tuple[str, str]  # (policy name, key)


class RateLimiter:
    """``check(key, policy)``: a Decision at once when this process can answer alone, else an
    awaitable of one. Never raises because of Redis. ``clock`` is the local monotonic clock;
    ``redis_clock`` (tests only) replaces Redis' TIME in the script."""

    def __init__(
        self,
        redis: RedisLink,
        logger: FilteringBoundLogger,
        *,
        namespace: str,
        replicas: int = 1,
        registry: CollectorRegistry | None,
        lease_seconds: float = 0.05,
        lease_ttl: float = 0.2,
        max_lease: int = 1000,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        redis_clock: Callable[[], float] | None = None,
        multiprocess: bool | None = None,
    ) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError("replicas must be an int of at least 1")
        if not (0 < lease_seconds <= lease_ttl) or max_lease < 1 or max_keys < 1:
            raise ValueError("need 0 < lease_seconds <= lease_ttl, max_lease and max_keys >= 1")
        self.redis = redis
        self.logger = logger
        self.namespace = namespace
        self.replicas = replicas
        self.lease_seconds = lease_seconds
        self.lease_ttl = lease_ttl
        self.max_lease = max_lease
        self.max_keys = max_keys
        self.metrics = RateLimitMetrics(registry=registry, multiprocess=multiprocess)
        self._clock = clock
        self._redis_clock = redis_clock
        self._gcra = RedisGcra()
        self._local = LocalGcra(replicas=replicas, max_keys=max_keys)
        self._leases: dict[Ident, Lease] = {}
        self._flights: dict[Ident, asyncio.Task[None]] = {}
        self._probe: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, redis: RedisLink) -> None:
        """Use this link from now on: the limiter (and a middleware holding it) can be built
        before start-up, and get the RedisLink the lifespan opens."""
        self.redis = redis

    @property
    def fallback_active(self) -> bool:
        """True while this process limits on its own share (no Redis answering)."""
        return self.metrics.fallback_active

    def admit(self, key: str, policy: Policy) -> tuple[Header, Header] | None:
        """The hottest path: a request admitted from this key's lease, answered with its
        RateLimit-Policy and RateLimit headers (no Decision is made). None for anything else: a
        key with no lease, no token left, a standing denial; then ``try_acquire`` decides, and
        counts the request, as it would have without this call."""
        # What take() does for a token, inline (a frame fewer), and no Decision: the headers
        # come from bytes the lease keeps (Lease.prepare), only r is formatted per request, t
        # once a second. Bytes as rate_limit_headers renders take()'s Decision (tests compare).
        ident = (policy.name, key)
        lease = self._leases.get(ident)
        if lease is None:
            return None
        now = self._clock()
        tokens = lease.tokens
        if not tokens or now >= lease.expires:
            return None  # try_acquire counts the request in demand, as it always did
        if lease.policy is not policy:
            lease.prepare(policy)
        lease.tokens = tokens = tokens - 1
        lease.demand += 1
        lease.counts[0] += 1
        if tokens <= lease.low or now >= lease.refresh_at:
            self._renew_ahead(ident, lease, policy, now)
        reset = lease.full_at - now
        if not lease.reset_above < reset <= lease.reset_upto:
            lease.reset_moved(reset)
        remaining = lease.remaining + tokens
        return lease.policy_header, (b"ratelimit", lease.ratelimit_format % remaining)

    def check(self, key: str, policy: Policy) -> Decision | Awaitable[Decision]:
        decision = self.try_acquire(key, policy)
        return decision if decision is not None else self.settle(key, policy)

    def try_acquire(self, key: str, policy: Policy) -> Decision | None:
        """The hot path, no I/O: None when only Redis can answer (then call ``settle``)."""
        ident = (policy.name, key)
        lease = self._leases.get(ident)
        now = self._clock()
        if lease is None:
            if not self._local_only(now):
                return None
            lease = self._add_lease(ident, policy)
        lease.demand += 1
        decision = lease.take(policy, now)
        if decision is None and self._local_only(now):
            return self._decide_locally(lease, key, policy, now)
        return decision

    async def acquire(self, key: str, policy: Policy) -> Decision:
        decision = self.try_acquire(key, policy)
        return decision if decision is not None else await self.settle(key, policy)

    async def settle(self, key: str, policy: Policy) -> Decision:
        """The decision ``try_acquire`` just left open (it returned None): through Redis, or
        locally when Redis is not answering. Call it only then: a call of its own would count
        the request twice in the key's demand."""
        ident = (policy.name, key)
        lease = self._leases.get(ident)
        if lease is None:
            lease = self._add_lease(ident, policy)
            lease.demand += 1  # try_acquire counted only requests that found a lease
        for round_ in range(_MAX_ROUNDS):
            lease = self._leases.get(ident, lease)  # a sweep may have replaced it meanwhile
            now = self._clock()
            decision = lease.take(policy, now)
            if decision is not None:
                return decision
            if round_:
                lease.demand += 1  # still unserved: the next lease is sized for it too
            if self._local_only(now):
                return self._decide_locally(lease, key, policy, now)
            flight = self._flights.get(ident)
            if flight is None:
                flight = self._start_flight(ident, lease, policy)
            # wait(), not await: a caller that goes away leaves the flight to the others, and
            # the flight's own end (even cancelled) never raises into a caller.
            await asyncio.wait((flight,))
        return self._decide_locally(lease, key, policy, self._clock())

    def _renew_ahead(self, ident: Ident, lease: Lease, policy: Policy, now: float) -> None:
        """The next lease for a key in steady use, asked for while this one still admits
        (Lease.refilled says when): once per lease, and not while Redis is paused or a refill
        of the key is in flight."""
        lease.low, lease.refresh_at = -1, math.inf
        if ident not in self._flights and not self._local_only(now):
            self._start_flight(ident, lease, policy)

    def _add_lease(self, ident: Ident, policy: Policy) -> Lease:
        leases = self._leases
        if len(leases) >= self.max_keys:
            self.sweep()
            if len(leases) >= self.max_keys:
                for oldest in list(islice(leases, max(1, self.max_keys // 100))):
                    del leases[oldest]
        lease = leases[ident] = Lease(self.metrics.counts(policy.name), self._clock())
        return lease

    def _start_flight(self, ident: Ident, lease: Lease, policy: Policy) -> asyncio.Task[None]:
        flight = asyncio.create_task(self._refill(ident, lease, policy))
        self._flights[ident] = flight
        if self.metrics.fallback_active:
            self._probe = flight  # the others keep deciding locally until it answers
        flight.add_done_callback(lambda done: self._landed(ident, done))
        return flight

    def _landed(self, ident: Ident, flight: asyncio.Task[None]) -> None:
        if self._flights.get(ident) is flight:
            del self._flights[ident]
        if self._probe is flight:
            self._probe = None
        if not flight.cancelled() and (exc := flight.exception()) is not None:
            # _refill catches what Redis raises: this is a bug, and the waiters decide locally.
            self.logger.error("rate_limit_refill_failed", error=error_name(exc))

    async def _refill(self, ident: Ident, lease: Lease, policy: Policy) -> None:
        client = self.redis.client
        if client is None:
            return  # the waiters see it in _local_only
        sent = self._clock()
        wanted = lease.wanted(
            sent,
            policy,
            lease_seconds=self.lease_seconds,
            roomy_seconds=_ROOMY_SECONDS,
            cap=self.max_lease,
        )
        now_us = None if self._redis_clock is None else round(self._redis_clock() * 1_000_000)
        key = f"{self.namespace}:ratelimit:{ident[0]}:{ident[1]}"
        try:
            async with asyncio.timeout(self.redis.timeout):
                grant = await self._gcra.take(client, key, policy, wanted, now_us)
        except Exception as exc:
            self.metrics.redis_errors += 1
            self._paused_until = self._clock() + _REDIS_PAUSE
            self._enter_fallback(error_name(exc))
            return
        self.metrics.redis_ok += 1
        if self.metrics.fallback_active:
            self._recovered()
        lease.refilled(
            grant,
            policy,
            wanted=wanted,
            sent=sent,
            received=self._clock(),
            ttl=_ROOMY_SECONDS if lease.roomy else self.lease_ttl,
            hold_seconds=self.lease_seconds,
        )

    def _local_only(self, now: float) -> bool:
        if self._paused_until > now:
            return True
        if self.redis.client is None:
            configured = self.redis.configured
            self._enter_fallback("redis_unavailable" if configured else "redis_not_configured")
            return True
        return self._probe is not None

    def _decide_locally(self, lease: Lease, key: str, policy: Policy, now: float) -> Decision:
        decision = self._local.decide(key, policy, now)
        lease.counts[0 if decision.allowed else 1] += 1
        return decision

    def _enter_fallback(self, reason: str) -> None:
        if self.metrics.fallback_active:
            return
        self.metrics.fallback_active = True
        # Without Redis configured this is the intended single-node mode, not an alarm.
        log = self.logger.warning if self.redis.configured else self.logger.info
        log(
            "rate_limit_fallback",
            reason=reason,
            replicas=self.replicas,
            detail="each process admits limit / replicas on its own until Redis answers",
        )

    def _recovered(self) -> None:
        self.metrics.fallback_active = False
        self._paused_until = 0.0
        self._local.clear()
        self.logger.info("rate_limit_redis_recovered")

    def sweep(self) -> None:
        """Drop keys with nothing leased and no denial standing (start() runs this each second)."""
        now = self._clock()
        flights = self._flights
        for ident in [i for i, lease in self._leases.items() if lease.idle(now)]:
            if ident not in flights:
                del self._leases[ident]
        self._local.sweep(now)

    async def start(self) -> None:
        self._tasks.append(background.run_every(_SWEEP_SECONDS, self.sweep, name="ratelimit-sweep"))

    async def stop(self) -> None:
        for task in self._tasks:
            await background.stop(task)
        self._tasks.clear()

    def flush(self) -> None:
        self.metrics.flush()

    def keys(self) -> int:
        """Keys this process holds state for (leases, and fallback buckets)."""
        return len(self._leases) + len(self._local)
