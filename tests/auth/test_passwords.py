from __future__ import annotations

import asyncio
import statistics
import threading
import time
import unicodedata
from collections.abc import Iterator
from typing import Any

import argon2
import pytest

from server.auth.passwords import PasswordHasher, Verification

CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
# Costly enough (~15 ms) that timing differences stand well above scheduling noise.
MEASURABLE = {"time_cost": 2, "memory_cost": 16_384, "parallelism": 1}


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(**CHEAP)
    yield hasher
    hasher.close()


async def test_hash_then_verify(hasher: PasswordHasher) -> None:
    digest = await hasher.hash("correct horse battery staple")
    assert digest.startswith("$argon2id$")
    assert await hasher.verify(digest, "correct horse battery staple") == Verification(
        ok=True, needs_rehash=False
    )


async def test_wrong_password_is_not_ok(hasher: PasswordHasher) -> None:
    digest = await hasher.hash("correct horse battery staple")
    assert await hasher.verify(digest, "correct horse battery stapler") == Verification(
        ok=False, needs_rehash=False
    )


@pytest.mark.parametrize("garbage", ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$xx$yy", "é"])
async def test_malformed_hash_is_not_ok(hasher: PasswordHasher, garbage: str) -> None:
    assert await hasher.verify(garbage, "whatever") == Verification(ok=False, needs_rehash=False)


async def test_unicode_forms_verify_alike(hasher: PasswordHasher) -> None:
    composed = unicodedata.normalize("NFC", "crème brûlée à la ｆｒａｎçａｉｓｅ")
    digest = await hasher.hash(unicodedata.normalize("NFD", composed))
    assert (await hasher.verify(digest, composed)).ok
    assert (await hasher.verify(digest, "crème brûlée à la française")).ok
    assert not (await hasher.verify(digest, "creme brulee a la francaise")).ok


async def test_changed_parameters_ask_for_a_rehash(hasher: PasswordHasher) -> None:
    old = await hasher.hash("correct horse battery staple")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    try:
        verdict = await stronger.verify(old, "correct horse battery staple")
        assert verdict == Verification(ok=True, needs_rehash=True)
        renewed = await stronger.hash("correct horse battery staple")
        assert (
            await stronger.verify(renewed, "correct horse battery staple")
        ).needs_rehash is False
    finally:
        stronger.close()


async def test_defaults_are_argon2id_with_argon2_cffi_costs() -> None:
    hasher = PasswordHasher()
    try:
        digest = await hasher.hash("correct horse battery staple")
    finally:
        hasher.close()
    params = argon2.extract_parameters(digest)
    assert params.type is argon2.Type.ID
    assert params.memory_cost >= 65_536
    assert params.time_cost >= 3


async def test_dummy_verification_costs_what_a_real_one_does() -> None:
    hasher = PasswordHasher(**MEASURABLE)
    try:
        digest = await hasher.hash("correct horse battery staple")
        real, dummy = [], []
        for _ in range(7):
            start = time.perf_counter()
            await hasher.verify(digest, "a wrong guess")
            real.append(time.perf_counter() - start)
            start = time.perf_counter()
            await hasher.verify_dummy("a wrong guess")
            dummy.append(time.perf_counter() - start)
    finally:
        hasher.close()
    ratio = statistics.median(dummy) / statistics.median(real)
    assert 0.5 < ratio < 2, (ratio, real, dummy)
    assert statistics.median(dummy) > 0.002  # it really ran argon2, not a shortcut


async def test_concurrent_hashes_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    in_flight = peak = 0
    original = argon2.PasswordHasher.hash

    def counting_hash(self: argon2.PasswordHasher, password: Any, **kwargs: Any) -> str:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            time.sleep(0.02)  # holds the slot long enough for the others to pile up
            return original(self, password, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(argon2.PasswordHasher, "hash", counting_hash)
    hasher = PasswordHasher(**CHEAP, max_concurrent=2)
    try:
        digests = await asyncio.gather(*(hasher.hash(f"password {n}") for n in range(10)))
    finally:
        hasher.close()
    assert len(set(digests)) == 10
    assert peak == 2  # capped, and yet really concurrent


async def test_event_loop_keeps_running_while_hashing() -> None:
    hasher = PasswordHasher(time_cost=3, memory_cost=32_768, parallelism=1, max_concurrent=1)
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        start = time.perf_counter()
        await asyncio.gather(*(hasher.hash(f"password {n}") for n in range(4)))
        elapsed = time.perf_counter() - start
    finally:
        ticker.cancel()
        hasher.close()
    one_hash = elapsed / 4  # one at a time, leaving a core to the loop on small machines
    assert one_hash > 0.02
    assert len(gaps) > 10
    assert max(gaps) < one_hash / 2, (max(gaps), one_hash)


def test_invalid_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        PasswordHasher(max_concurrent=0)
