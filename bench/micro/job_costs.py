"""``python -m bench.micro.job_costs JOB --calls N``: one of the warm read's jobs, N times, for
callgrind to count.

The jobs the edge ceiling (bench/ceilings/product_edge.py) runs around the warm product read,
each through hotpath's own code and alone, with no Redis, PostgreSQL or event loop, and with
every clock the job reads standing still, so that a count repeats to the instruction:

- ``token``: ``Authenticator`` on a bearer token it has verified before (the verified-token
  cache, the denylist holding other sessions and users, the principal kept per token);
- ``limit``: ``RouteClasses`` and ``RateLimiter.admit`` on a key with a leased batch;
- ``cache``: ``ProductCache.get`` on a product held locally past ``local_ttl``, vouched for by
  a heartbeat (the served case), awaited as the handler awaits it;
- ``line``: the access line (``RequestLines.info``) into a ``LineBuffer`` on /dev/null;
- ``none``: the loop alone, to subtract.

N calls run inside one ``functools.reduce`` call, which is all callgrind collects::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \
        .venv/bin/python -m bench.micro.job_costs token --calls 20000

(instructions of ``token`` - instructions of ``none``) / N is the job's cost a request.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import types
from collections.abc import Callable, Generator
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.auth.authenticator import Authenticator
from server.auth.denylist import Denylist, Revocation
from server.auth.keys import KeyRing, SigningKey
from server.auth.principal import Principal
from server.auth.tokens import AccessTokenCodec
from server.catalog.cache import CachedProduct, ProductCache
from server.ratelimit.classes import RouteClasses
from server.ratelimit.gcra import Grant
from server.ratelimit.limiter import RateLimiter
from server.runtime.logs import LineBuffer, RequestLines
from server.runtime.redis_link import RedisLink
from server.runtime.settings import load_settings

JOBS = ("none", "token", "limit", "cache", "line")
NOW = 1_800_000_000.0  # the wall clock, for the token's expiry
MONOTONIC = 5_000.0  # the monotonic clock, for the lease and the cache
LOGGER = structlog.wrap_logger(structlog.PrintLogger(open(os.devnull, "w")))  # noqa: SIM115
SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "GET",
    "path": "/v1/products/7",
    "client": ("127.0.0.1", 50123),
}


def _token() -> Callable[[], object]:
    private = Ed25519PrivateKey.generate()
    ring = KeyRing("EdDSA", [SigningKey("k1", "EdDSA", private, private.public_key())], None)
    codec = AccessTokenCodec(
        ring, issuer="https://auth.hotpath.test", audience="hotpath-api", clock=lambda: NOW
    )
    denylist = Denylist()
    for n in range(100):  # other sessions and users revoked
        denylist.apply(Revocation(n + 1, "session", f"session-{n}", 0.0, NOW + 600))
        denylist.apply(Revocation(n + 101, "user", str(5000 + n), NOW - 60, NOW + 600))
    authenticate = Authenticator(codec, denylist)
    token, _ = codec.issue(
        sub="7", sid="6f1c7e0a-2b1f-4c55-9a0e-3d1f5b7c9e21", roles=["customer"], permissions=[]
    )
    header = b"Bearer " + token.encode()
    scope = dict(SCOPE)
    authenticate(header.decode("latin-1"), scope)  # verified once: the cache holds it
    bound = authenticate.__call__  # as create_app passes it to the authentication layer
    # A new str a request, decoded as the authentication layer decodes the header: its hash is
    # not cached yet, as a served request's is not.
    return lambda: bound(header.decode("latin-1"), scope)


def _limit() -> Callable[[], object]:
    classify = RouteClasses(load_settings()).__call__  # as build_rate_limit passes it
    limiter = RateLimiter(
        RedisLink(None, timeout=0.1, logger=LOGGER),
        LOGGER,
        namespace="bench",
        registry=None,
        clock=lambda: MONOTONIC,
        multiprocess=False,
    )
    scope = dict(SCOPE, principal=Principal(7, "session", ("customer",), frozenset(), 0))
    found = classify(scope)
    assert found is not None
    key, policy = found
    lease = limiter._add_lease((policy.name, key), policy)
    lease.refilled(
        Grant(10**9, 10**6, 500_000, 0),
        policy,
        wanted=10**9,
        sent=MONOTONIC,
        received=MONOTONIC,
        ttl=1.0,
        hold_seconds=0.05,
    )
    assert limiter.admit(key, policy) is not None

    def run() -> object:
        found = classify(scope)
        assert found is not None
        return limiter.admit(*found)

    return run


def _cache() -> Callable[[], object]:
    clock = [MONOTONIC]
    cache = ProductCache(
        RedisLink(None, timeout=0.1, logger=LOGGER),
        LOGGER,
        namespace="bench",
        registry=None,
        clock=lambda: clock[0],
        multiprocess=False,
    )
    product = CachedProduct(1, '"p-7-1"', b'{"id":7}')
    cache.follower.followed_until = MONOTONIC + 2.0  # a heartbeat came back

    async def store() -> None:
        cache._store(7, product)  # as a load stores it, on the event loop

    asyncio.run(store())
    clock[0] = MONOTONIC + 1.0  # past local_ttl: the followed copy serves

    async def load() -> CachedProduct | None:
        raise AssertionError("a warm read loads nothing")

    got: list[CachedProduct | None] = []

    async def reads() -> None:
        # One read a step: the handler's await of the cache, then back to run() (no
        # StopIteration a read, as an await of a coroutine that returns raises none).
        while True:
            got.append(await cache.get(7, load))
            await _step()

    loop = reads()
    step = loop.send

    def run() -> object:
        got.clear()
        return step(None)

    run()
    assert got == [product], "a warm read answers the local copy without waiting"
    return run


@types.coroutine
def _step() -> Generator[None, None, None]:
    yield


def _line() -> Callable[[], object]:
    out = os.open(os.devnull, os.O_WRONLY)
    lines = RequestLines(LineBuffer(out), 20)

    def run() -> object:
        return lines.info(
            "http_request",
            method="GET",
            path="/v1/products/7",
            route="/v1/products/{product_id}",
            status=200,
            duration_ns=41_234,
            bytes=312,
            client_ip="127.0.0.1",
            user_agent="wrk",
            error=None,
            request_id="3f2a9c1e5b7d4f60a8e2c4b6d8f0a1c3",
            trace_id=None,
            span_id=None,
        )

    return run


def _none() -> Callable[[], object]:
    return lambda: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    job = {"none": _none, "token": _token, "limit": _limit, "cache": _cache, "line": _line}
    run = job[args.job]()
    for _ in range(100):
        run()  # warm: the interpreter's specializations, the lease's prepared headers
    functools.reduce(lambda _, __: run(), range(args.calls), None)


if __name__ == "__main__":
    main()
