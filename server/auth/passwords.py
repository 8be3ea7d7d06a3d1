"""argon2id password hashing off the event loop.

argon2 releases the GIL, so hashes run in parallel on a dedicated pool of threads. Each one holds
``memory_cost`` KiB (64 MiB by default) while it runs, so at most ``max_concurrent`` run at once:
a login burst queues on the semaphore instead of exhausting memory or the default executor that
``asyncio.to_thread`` shares with everything else.
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import argon2
from argon2.exceptions import VerificationError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    needs_rehash: bool


class PasswordHasher:
    """Hash and verify passwords with argon2id; the defaults are argon2-cffi's (RFC 9106)."""

    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_cost: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        max_concurrent: int = 4,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        # The semaphore makes callers wait on the event loop, where a cancelled request simply
        # leaves the queue; the pool's size keeps the cap even when a cancelled caller's thread
        # is still finishing its hash.
        self._slots = asyncio.Semaphore(max_concurrent)
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="argon2")
        # Made at once in the background, so the first unknown account costs no more than later
        # ones and the constructor does not block.
        self._dummy_hash = self._pool.submit(self._hasher.hash, secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, _normalize(password))

    async def verify(self, hash: str, password: str) -> Verification:
        """A wrong password or a malformed hash gives ``ok=False``; neither raises."""
        return await self._run(self._verify, hash, _normalize(password))

    async def verify_dummy(self, password: str) -> None:
        """Spend what a real verification costs, so an unknown account answers no faster."""
        await self.verify(await asyncio.wrap_future(self._dummy_hash), password)

    def close(self) -> None:
        # Running hashes finish on their own threads; queued ones are dropped.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify(self, hash: str, password: str) -> Verification:
        try:
            self._hasher.verify(hash, password)
        # ValueError: InvalidHashError, and UnicodeEncodeError for a non-ASCII hash.
        except (VerificationError, ValueError):
            return Verification(ok=False, needs_rehash=False)
        return Verification(ok=True, needs_rehash=self._hasher.check_needs_rehash(hash))

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, function, *args)


def _normalize(password: str) -> str:
    # NIST SP 800-63B: NFKC before hashing, so "é" typed composed on one device and decomposed
    # on another is the same password. ASCII is unchanged.
    return unicodedata.normalize("NFKC", password)
