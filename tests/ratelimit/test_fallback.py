"""The per-process share while Redis is unreachable: what it admits, and that its headers state
that share, not the shared quota no process is enforcing."""

from __future__ import annotations

import dataclasses
import secrets

from structlog.typing import FilteringBoundLogger

from server.app import create_app
from server.ratelimit import Policy, rate_limit_headers
from server.ratelimit.fallback import LocalGcra
from server.runtime.settings import Settings
from tests.fixtures.support import ThrowawayRedis, client_for, lifespan


def address() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def policy_header(local: LocalGcra, policy: Policy) -> bytes:
    return dict(rate_limit_headers(local.decide("k", policy, 1000.0)))[b"ratelimit-policy"]


def test_a_share_states_its_own_quota() -> None:
    local = LocalGcra(replicas=4, max_keys=100)
    assert policy_header(local, Policy("read", 1200, 60.0)) == b'"read";q=300;w=60'
    assert policy_header(local, Policy("odd", 10, 60.0)) == b'"odd";q=2;w=60'  # 2.5 rounded down
    # Under one request a window: one request over a window as many times longer.
    assert policy_header(local, Policy("auth", 2, 60.0)) == b'"auth";q=1;w=120'
    assert policy_header(LocalGcra(replicas=1, max_keys=100), Policy("read", 1200, 60.0)) == (
        b'"read";q=1200;w=60'
    )


async def test_with_redis_unreachable_the_headers_state_the_share_enforced(
    settings: Settings, logger: FilteringBoundLogger, throwaway_redis: ThrowawayRedis
) -> None:
    limited = dataclasses.replace(
        settings,
        redis_url=throwaway_redis.url,
        rate_limits=True,
        rate_read=(6, 60.0),
        rate_replicas=2,
    )
    app = create_app(limited, logger=logger)
    async with lifespan(app):
        async with client_for(app, client=(address(), 40000)) as http:
            shared = await http.get("/v1/products")
            assert shared.headers["ratelimit-policy"] == '"read";q=6;w=60'
        throwaway_redis.kill()

        # Another client: the first one's lease would answer for the shared budget a while.
        async with client_for(app, client=(address(), 40000)) as http:
            answers = [await http.get("/v1/products") for _ in range(4)]

    # Six a minute over two replicas: this one admits three, and says so.
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer in answers:
        assert answer.headers["ratelimit-policy"] == '"read";q=3;w=60'
    assert [a.headers["ratelimit"].split(";")[1] for a in answers] == ["r=2", "r=1", "r=0", "r=0"]
