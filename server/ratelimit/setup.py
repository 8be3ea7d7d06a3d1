"""The limiter and its middleware, built with the app; the lifespan hands it the Redis link."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from structlog.typing import FilteringBoundLogger

from middleware.rate_limit import rate_limit_layer
from server.db.devdb import database_name
from server.ratelimit.classes import RouteClasses
from server.ratelimit.headers import rate_limit_headers
from server.ratelimit.limiter import RateLimiter
from server.ratelimit.policy import Policy
from server.runtime.redis_link import RedisLink
from server.runtime.settings import Settings
from server.web.problem import middleware_error_renderer


class AccountBudget:
    """Per account, how many mails an anonymous caller may make us send (password resets):
    the per-address budget alone lets a sender spread over many addresses flood one inbox."""

    def __init__(self, limiter: RateLimiter, policy: Policy) -> None:
        self.limiter = limiter
        self.policy = policy

    async def allows(self, email: str) -> bool:
        decision = await self.limiter.acquire("account:" + email.strip().lower(), self.policy)
        return decision.allowed


def build_rate_limit(
    settings: Settings, logger: FilteringBoundLogger, registry: CollectorRegistry
) -> tuple[RateLimiter, Middleware, AccountBudget] | None:
    """None when HOTPATH_RATE_LIMITS is off. Until ``attach``, the limiter decides locally."""
    if not settings.rate_limits:
        return None
    limiter = RateLimiter(
        RedisLink(None, timeout=settings.redis_timeout, logger=logger),
        logger,
        namespace=f"hotpath:{database_name(settings.database_url)}",
        replicas=settings.rate_replicas,
        registry=registry,
    )
    middleware = Middleware(
        # The layer's bound __call__, not the instance, for the same reason as classify's.
        rate_limit_layer,
        # The bound method, not the instance: calling an object goes through its type's call
        # slot, unspecialized; a bound method's call the interpreter specializes and inlines.
        classify=RouteClasses(settings).__call__,
        admit=limiter.admit,
        check=limiter.try_acquire,
        wait=limiter.settle,
        headers=rate_limit_headers,
        on_error=middleware_error_renderer,
    )
    budget = AccountBudget(limiter, Policy("account-mail", *settings.rate_account_mail))
    return limiter, middleware, budget
