"""What a password hash and verify cost through our hasher, at production and test parameters.

Production is ``Settings()``'s argon2id (time cost 3, 64 MiB, four lanes); test is the cheap
setting the identity tests use (time cost 1, 1 MiB). Calls go through ``PasswordHasher`` as a
login does, its thread pool included. The dummy verification an unknown email pays must cost
what a wrong password for a known one does, or login timing tells which emails have accounts.
At production cost a call takes tens of milliseconds, so rounds are few.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import TypeVar

import argon2
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from server.auth.passwords import PasswordHasher, Verification
from server.runtime.settings import Settings

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
WRONG = "correct horse battery stapler"
PRODUCTION = Settings()
TEST = replace(PRODUCTION, argon2_time_cost=1, argon2_memory_kib=1024)
COSTS = {"production": PRODUCTION, "test": TEST}
ROUNDS = {"production": 5, "test": 50}
PAIR_ROUNDS = 9


def make_hasher(settings: Settings) -> PasswordHasher:
    # As the container builds it.
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        max_concurrent=settings.password_hash_concurrency,
    )


class Env:
    def __init__(self, loop: asyncio.AbstractEventLoop, hasher: PasswordHasher, cost: str) -> None:
        self.loop, self.hasher, self.cost = loop, hasher, cost
        self.rounds = ROUNDS[cost]
        self.digest = self.call(lambda: hasher.hash(PASSWORD))
        self.call(lambda: hasher.verify_dummy(WRONG))  # waits for the dummy hash to exist

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        return self.loop.run_until_complete(make())

    def runner(self, make: Callable[[], Awaitable[T]]) -> Callable[[], T]:
        return lambda: self.call(make)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module", params=list(COSTS))
def env(request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop) -> Iterator[Env]:
    hasher = make_hasher(COSTS[request.param])
    try:
        yield Env(loop, hasher, request.param)
    finally:
        hasher.close()


@pytest.mark.benchmark(group="argon2")
def test_hash(benchmark: BenchmarkFixture, env: Env) -> None:
    digest = benchmark.pedantic(  # type: ignore[no-untyped-call]
        env.runner(lambda: env.hasher.hash(PASSWORD)), rounds=env.rounds, iterations=1
    )
    settings = COSTS[env.cost]
    params = argon2.extract_parameters(digest)
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost) == (
        settings.argon2_time_cost,
        settings.argon2_memory_kib,
    )


@pytest.mark.benchmark(group="argon2")
@pytest.mark.parametrize("password", [PASSWORD, WRONG], ids=["right", "wrong"])
def test_verify(benchmark: BenchmarkFixture, env: Env, password: str) -> None:
    verdict = benchmark.pedantic(  # type: ignore[no-untyped-call]
        env.runner(lambda: env.hasher.verify(env.digest, password)),
        rounds=env.rounds,
        iterations=1,
    )
    assert verdict == Verification(ok=password == PASSWORD, needs_rehash=False)


@pytest.mark.benchmark(group="argon2")
def test_verify_dummy(benchmark: BenchmarkFixture, env: Env) -> None:
    """An unknown email: what it must cost is asserted by the ratio below."""
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        env.runner(lambda: env.hasher.verify_dummy(WRONG)), rounds=env.rounds, iterations=1
    )


def _ms(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


@pytest.mark.benchmark(group="argon2-ratio")
def test_unknown_email_costs_a_wrong_password(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleave the verifications at production cost so machine noise hits them alike.

    Asserted, unlike the other ratios here: it is the enumeration-safety property.
    """
    hasher = make_hasher(PRODUCTION)
    try:
        env = Env(loop, hasher, "production")
        variants = {
            "dummy": env.runner(lambda: hasher.verify_dummy(WRONG)),
            "wrong": env.runner(lambda: hasher.verify(env.digest, WRONG)),
            "right": env.runner(lambda: hasher.verify(env.digest, PASSWORD)),
        }

        def measure() -> dict[str, float]:
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(PAIR_ROUNDS):
                for name, run in variants.items():
                    samples[name].append(_ms(run))
            return {name: statistics.median(times) for name, times in samples.items()}

        medians = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    finally:
        hasher.close()
    ratio = medians["dummy"] / medians["wrong"]
    benchmark.extra_info.update(medians, ratio=ratio)
    with capsys.disabled():
        print(
            f"\nargon2id at production cost: dummy verify {medians['dummy']:.1f} ms,"
            f" wrong password {medians['wrong']:.1f} ms, right password {medians['right']:.1f} ms"
            f" (dummy/wrong {ratio:.2f})"
        )
    assert 0.7 <= ratio <= 1.4, medians
