"""GCRA with batch leasing, twice: in Lua for the limit shared through Redis, and in Python for
the per-process fallback. Tests hold the two to the same answers.

A key stores its theoretical arrival time (TAT) in microseconds. A request for ``n`` tokens at
``now`` gets as many as fit under ``now + capacity * interval`` (0..n, so a partial grant when
fewer are left) and moves the TAT by one interval per granted token. The answer carries what
the headers need: tokens left after the grant, microseconds until the bucket is full again, and,
when none is left, microseconds until the next one. The script reads Redis' own clock (TIME),
so every replica shares one clock; the key expires when its bucket is full again, which is the
state an absent key stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from server.ratelimit.policy import Policy
from server.runtime.redis_client import RedisClient
from server.runtime.redis_script import RedisScript

# KEYS[1]: the TAT. ARGV: interval (us), capacity, tokens wanted, and "now" in us (tests only;
# empty: Redis' TIME). All values stay integers below 2^53, exact in Lua's doubles.
LEASE_SCRIPT = """
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local room = now + capacity * interval - tat
local available = math.floor(room / interval)
if (available + 1) * interval <= room then available = available + 1 end
if available * interval > room then available = available - 1 end
if available < 0 then available = 0 end
local granted = math.min(wanted, available)
if granted > 0 then
  tat = tat + granted * interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
local retry = 0
if available == granted then retry = tat - (capacity - 1) * interval - now end
return {granted, available - granted, tat - now, retry}
"""


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    remaining: int
    reset_us: int  # until the bucket is full again
    retry_us: int  # 0 while a token is left, else until the next one


def step(tat: int, now: int, interval: int, capacity: int, wanted: int) -> tuple[int, Grant]:
    """The script's arithmetic in Python: (new TAT, grant) for a key whose TAT is ``tat``."""
    tat = max(tat, now)
    available = max(0, (now + capacity * interval - tat) // interval)
    granted = min(wanted, available)
    tat += granted * interval
    retry = tat - (capacity - 1) * interval - now if available == granted else 0
    return tat, Grant(granted, available - granted, tat - now, retry)


class RedisGcra:
    """The script, bound to no client: each call names the client it runs on."""

    def __init__(self) -> None:
        self._script = RedisScript(LEASE_SCRIPT)

    async def take(
        self,
        client: RedisClient,
        key: str,
        policy: Policy,
        wanted: int,
        now_us: int | None = None,
    ) -> Grant:
        args = (policy.interval_us, policy.capacity, wanted, "" if now_us is None else now_us)
        reply = cast(list[int], await self._script.run(client, [key], args))
        granted, remaining, reset_us, retry_us = (int(value) for value in reply)
        return Grant(granted, remaining, reset_us, retry_us)
