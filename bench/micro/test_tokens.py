"""What verifying an EdDSA access token costs: a signature check (cold) against a cache hit.

A round verifies a batch of distinct tokens, so the cached variant times dictionary lookups on
a realistic number of entries, not one hot key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_benchmark.fixture import BenchmarkFixture

from server.auth.keys import KeyRing, SigningKey
from server.auth.tokens import AccessTokenCodec

BATCH = 200
PAIR_ROUNDS = 30


def make_codec() -> AccessTokenCodec:
    private = Ed25519PrivateKey.generate()
    ring = KeyRing("EdDSA", [SigningKey("k1", "EdDSA", private, private.public_key())], None)
    return AccessTokenCodec(ring, issuer="https://auth.hotpath.test", audience="hotpath-api")


def issue_batch(codec: AccessTokenCodec) -> list[str]:
    roles = ["member", "support"]
    permissions = ["orders:read", "orders:write", "users:read", "reports:read"]
    return [
        codec.issue(
            sub=str(1000 + n),
            sid="6f1c7e0a-2b1f-4c55-9a0e-3d1f5b7c9e21",
            roles=roles,
            permissions=permissions,
        )[0]
        for n in range(BATCH)
    ]


def cold_runner(codec: AccessTokenCodec, tokens: list[str]) -> Callable[[], None]:
    def run() -> None:
        for token in tokens:
            codec.forget(token)
            codec.verify(token)

    return run


def cached_runner(codec: AccessTokenCodec, tokens: list[str]) -> Callable[[], None]:
    for token in tokens:
        codec.verify(token)

    def run() -> None:
        for token in tokens:
            codec.verify(token)

    return run


def test_the_timed_tokens_verify() -> None:
    codec = make_codec()
    tokens = issue_batch(codec)
    cold_runner(codec, tokens)()
    assert codec.cache_len() == BATCH
    assert codec.verify(tokens[-1]).sub == str(1000 + BATCH - 1)


@pytest.mark.benchmark(group="access-token-verify")
def test_verify_cold(benchmark: BenchmarkFixture) -> None:
    codec = make_codec()
    benchmark.extra_info["tokens_per_round"] = BATCH
    benchmark(cold_runner(codec, issue_batch(codec)))


@pytest.mark.benchmark(group="access-token-verify")
def test_verify_cached(benchmark: BenchmarkFixture) -> None:
    codec = make_codec()
    benchmark.extra_info["tokens_per_round"] = BATCH
    benchmark(cached_runner(codec, issue_batch(codec)))


def _per_token_us(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / BATCH * 1e6


@pytest.mark.benchmark(group="access-token-ratio")
def test_cold_to_cached_ratio(
    benchmark: BenchmarkFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interleave the variants so machine noise hits them alike; print, never assert, the ratio."""
    codec = make_codec()
    cold_tokens, cached_tokens = issue_batch(codec), issue_batch(codec)
    variants = {
        "cold": cold_runner(codec, cold_tokens),
        "cached": cached_runner(codec, cached_tokens),
    }

    def measure() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(PAIR_ROUNDS):
            for name, run in variants.items():
                samples[name].append(_per_token_us(run))
        return {name: min(times) for name, times in samples.items()}

    best = benchmark.pedantic(measure, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    ratio = best["cold"] / best["cached"]
    benchmark.extra_info.update(best, ratio=ratio)
    with capsys.disabled():
        print(
            f"\nEdDSA access token verify: cold {best['cold']:.2f} us,"
            f" cached {best['cached']:.3f} us (cold/cached {ratio:.0f}x)"
        )
