"""What the edge ceilings of the reads and the order share: hotpath's collaborators for the
jobs around a handler, built from hotpath's settings as ``create_app`` and the container build
them, and a lifespan that opens them (bench/ceilings/product_edge.py, order_edge.py).

The jobs themselves stay fused in each ceiling's one function, but for the rate limit's, which
the three share as two methods (``Jobs.admitted``, then ``Jobs.decided`` only when no lease
answers); their collaborators live here: the token's ``Authenticator``, the limiter's
``RouteClasses`` and ``RateLimiter`` (when ``HOTPATH_RATE_LIMITS`` is on), the ``ProductCache``
on the same Redis as hotpath's, the access log's line writer (flushed every 0.5 s, as hotpath's
housekeeping flushes it), and a pool of hotpath's sizes that retires idle connections as
hotpath's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence

from starlette.types import Receive, Scope, Send
from structlog.typing import FilteringBoundLogger

from bench.ceilings.database import Ceiling
from server.auth.principal import Principal
from server.auth.setup import build_identity
from server.catalog.cache import ProductCache
from server.db.devdb import database_name
from server.ratelimit.classes import RouteClasses
from server.ratelimit.headers import rate_limit_headers
from server.ratelimit.limiter import RateLimiter
from server.ratelimit.policy import Decision
from server.runtime.logs import configure_logging, flush_logs, request_line_logger
from server.runtime.redis_link import RedisLink, open_redis
from server.runtime.settings import Settings, load_settings

# Connections idle this long go back (down to HOTPATH_DB_POOL_MIN): none while the edge is
# measured, all but those soon after, while the other servers of the round are (Ceiling.start).
_MAX_IDLE = 5.0
Authenticate = Callable[[str, Scope], Principal | Awaitable[Principal]]
# A test hands its own settings, and its own logger (whose stream it reads).
settings_from_env = load_settings
logger_for = configure_logging


class Jobs:
    """The collaborators hotpath's stack and handlers use, opened by ``lifespan``."""

    def __init__(self, settings: Settings, logger: FilteringBoundLogger, redis: RedisLink) -> None:
        namespace = f"hotpath:{database_name(settings.database_url)}"
        self.settings = settings
        self.lines = request_line_logger()
        # Bound methods, as create_app and build_rate_limit pass them to their layers (an
        # object's call goes through its type's call slot, unspecialized).
        self.authenticate: Authenticate = build_identity(settings).authenticator.__call__
        self.classify = RouteClasses(settings).__call__
        self.limiter: RateLimiter | None = None
        if settings.rate_limits:
            self.limiter = RateLimiter(
                redis,
                logger,
                namespace=namespace,
                replicas=settings.rate_replicas,
                registry=None,
                multiprocess=False,
            )
        self.cache = ProductCache(
            redis,
            logger,
            namespace=namespace,
            registry=None,
            followed_ttl=settings.product_cache_seconds,
            multiprocess=False,
        )
        self.timeout = settings.request_timeout

    def admitted(self, scope: Scope) -> Sequence[tuple[bytes, bytes]] | None:
        """The rate limit's headers as hotpath's layer gives them first: a token from the key's
        lease with the header bytes it keeps (``RateLimiter.admit``); () with the limiter off;
        None when only ``decided`` can answer. Not a coroutine: the common case awaits nothing."""
        if self.limiter is None:
            return ()
        found = self.classify(scope)
        assert found is not None
        return self.limiter.admit(*found)

    async def decided(self, scope: Scope) -> Sequence[tuple[bytes, bytes]]:
        """The headers when ``admitted`` has none: ``check``, and the one Redis call hotpath
        makes when the key has no lease yet."""
        assert self.limiter is not None
        found = self.classify(scope)
        assert found is not None
        decision = self.limiter.check(*found)
        if not isinstance(decision, Decision):
            decision = await decision
        if not decision.allowed:
            raise NotImplementedError("the ceiling is never refused (make bench's limits)")
        return rate_limit_headers(decision)


async def lifespan(
    ceiling: Ceiling, receive: Receive, send: Send, started: Callable[[Jobs | None], None]
) -> None:
    """The ASGI lifespan: ``started`` gets the open Jobs, and None before they close."""
    await receive()  # startup
    settings = settings_from_env()
    os.environ.setdefault("CEILING_DATABASE_URL", settings.database_url)
    logger = logger_for(settings.log_level)
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(
            open_redis(settings.redis_url, timeout=settings.redis_timeout, logger=logger)
        )
        jobs = Jobs(settings, logger, redis)
        await ceiling.start(min_size=settings.db_pool_min, max_idle=_MAX_IDLE)
        stack.push_async_callback(ceiling.stop)
        await jobs.cache.start()
        stack.push_async_callback(jobs.cache.stop)
        if jobs.limiter is not None:
            await jobs.limiter.start()
            stack.push_async_callback(jobs.limiter.stop)
        flushing = asyncio.create_task(_housekeep_every(0.5, ceiling))
        started(jobs)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        started(None)
        flushing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
    flush_logs()
    await send({"type": "lifespan.shutdown.complete"})


async def _housekeep_every(seconds: float, ceiling: Ceiling) -> None:
    # hotpath's housekeeping, twice a second: the log lines flushed, idle connections retired.
    while True:
        await asyncio.sleep(seconds)
        flush_logs()
        ceiling.retire_idle()
