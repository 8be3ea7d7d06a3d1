"""create_app: the Starlette application, its middleware stack and its lifespan."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from structlog.typing import FilteringBoundLogger

from middleware.authentication import AuthenticationMiddleware
from middleware.body_limit import BodyTiming
from middleware.csrf import CsrfMiddleware
from middleware.metrics import HttpMetrics
from middleware.stack import build_stack
from middleware.types import Rescue, RouteResolver, bound
from server import __version__
from server.auth.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE, SessionCookies
from server.auth.setup import build_identity
from server.backup.metrics import BackupMetrics
from server.backup.repository import BackupRepository
from server.container import ContainerFactory, build_container
from server.db.pool_metrics import PoolMetrics
from server.health.metrics import PROBE_SECONDS, HealthMetrics
from server.health.service import DrainState, mark_started
from server.ratelimit.setup import build_rate_limit
from server.routes import build_routes
from server.runtime import background
from server.runtime.logs import configure_logging, flush_logs, request_line_logger
from server.runtime.metrics import exposition_registry, multiprocess_mode, retire_worker
from server.runtime.process_metrics import RuntimeMetrics, register_build_info
from server.runtime.settings import Settings
from server.runtime.tracing import flush_tracing, start_tracing
from server.web.access import anonymous_paths
from server.web.error_boundary import ErrorBoundary
from server.web.errors import AppError
from server.web.openapi import build_openapi
from server.web.problem import exception_handlers, middleware_error_renderer
from server.web.responses import dumps
from server.web.routing import IndexedRouter
from server.web.state import attach_container

# A request allocates a few hundred objects and nearly all die with it: at the default 700 a
# young-generation pass ran every few requests (measured: an uncached product read 146 -> 137 us
# of server CPU).
GC_THRESHOLDS = (50_000, 20, 100)
# Info log lines and other workers' metrics are at most this late.
HOUSEKEEPING_SECONDS = 0.5


class HotpathApp(Starlette):
    """Starlette with our middleware *outside* its error handling, so even a 500 answer
    carries the request id, security headers and a metrics sample.

    The stack is built by hand rather than by Starlette: one ErrorBoundary's rescue where
    Starlette puts two error layers (run by the in-flight cap's layer, middleware/stack.py),
    the indexed router called directly, and no coroutine of its own in ``__call__``. Every
    layer left out is a frame fewer that each await below has to resume through (measured
    with the other frame cuts: an uncached product read about 155 -> 140 us of server CPU, a
    cached one 74 -> 65).
    """

    def __init__(self, *, wrap: Any, routes: list[BaseRoute], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.router = self.indexed_router = IndexedRouter(routes, lifespan=kwargs.get("lifespan"))
        self._wrap = wrap

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = self.router.app
        for cls, args, options in reversed(self.user_middleware):
            app = cls(bound(app), *args, **options)
        rescue = ErrorBoundary(self.exception_handlers).rescue
        return self._wrap(bound(app), self.indexed_router.route_for, rescue)  # type: ignore[no-any-return]

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        scope["app"] = self
        stack = self.middleware_stack
        if stack is None:
            # The outermost layer's bound __call__, as each layer holds the next (bound()).
            stack = self.middleware_stack = bound(self.build_middleware_stack())
        return stack(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    container_factory: ContainerFactory = build_container,
    logger: FilteringBoundLogger | None = None,
    drain: DrainState | None = None,
) -> HotpathApp:
    log = logger or configure_logging(settings.log_level)
    # Into the stream (and at the level) that the logging set-up above chose.
    request_lines = request_line_logger()
    # In the process that serves (a granian worker): the exporter's thread must be its own.
    tracing = start_tracing(settings.otel_endpoint)
    drain_state = drain or DrainState()
    identity = build_identity(settings)
    registry = CollectorRegistry(auto_describe=True)
    http_metrics = HttpMetrics(registry=registry, multiprocess=multiprocess_mode())
    runtime_metrics = RuntimeMetrics(registry=registry, multiprocess=multiprocess_mode())
    document: list[bytes] = []

    def openapi_document() -> bytes:
        if not document:
            spec = build_openapi(
                app.routes,
                title="hotpath",
                version=__version__,
                description="A production REST API server built for throughput.",
            )
            document.append(dumps(spec))
        return document[0]

    # Counters kept as plain ints that multiprocess mode writes to the shared files.
    metric_flushers: list[Callable[[], None]] = [http_metrics.flush, runtime_metrics.flush]
    # Other work of the same twice-a-second round.
    chores: list[Callable[[], object]] = [flush_logs]

    def housekeep() -> None:
        for flush in metric_flushers:
            flush()
        for chore in chores:
            chore()

    rate_limit = build_rate_limit(settings, log, registry)
    limiter = rate_limit[0] if rate_limit else None
    if rate_limit:
        identity = dataclasses.replace(identity, account_mail=rate_limit[2])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with container_factory(settings, log, drain_state, identity, registry) as container:
            attach_container(app, container)
            metric_flushers.append(container.catalog.cache.flush)
            metric_flushers.append(PoolMetrics(container.db.pool, registry=registry).flush)
            health_metrics = HealthMetrics(registry=registry)
            container.health.add_observer(health_metrics.record)
            metric_flushers.append(health_metrics.flush)
            backups = BackupMetrics(BackupRepository(container.queries), registry=registry)
            metric_flushers.append(backups.flush)
            # Before serving: a worker's figures exist from its first scrape on.
            await container.health.probe()
            chores.append(container.db.pool.retire_idle)
            if limiter is not None:
                limiter.attach(container.redis)
                await limiter.start()
                metric_flushers.append(limiter.flush)
            log.info("started", env=settings.env, version=__version__)
            mark_started()
            # Start-up objects live for the whole process: keep them out of every GC pass.
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            housekeeping = background.run_every(
                HOUSEKEEPING_SECONDS, housekeep, name="housekeeping"
            )
            # Readiness for the metrics where no orchestrator asks /readyz (compose).
            probing = background.repeat_async(
                PROBE_SECONDS, container.health.probe, name="readiness-probe", logger=log
            )
            watching_backups = await backups.watch(container.db, log)
            try:
                yield
            finally:
                drain_state.draining = True
                await background.stop(probing)
                await background.stop(watching_backups)
                await background.stop(housekeeping)
                if limiter is not None:
                    await limiter.stop()
                retire_worker(metric_flushers)
        log.info("stopped")
        flush_logs()
        flush_tracing()

    def wrap(inner: ASGIApp, resolve_route: RouteResolver, rescue: Rescue) -> ASGIApp:
        return build_stack(
            inner,
            logger=request_lines,
            access_log=settings.access_log,
            metrics=http_metrics,
            hsts=settings.hsts,
            max_body_bytes=settings.max_body_bytes,
            on_error=middleware_error_renderer,
            trusted_proxies=settings.trusted_proxies,
            cors_origins=settings.cors_origins,
            cors_credentials=settings.cors_credentials,
            max_in_flight=settings.max_in_flight,
            compress_from=settings.compress_from,
            request_timeout=settings.request_timeout,
            resolve_route=resolve_route,
            rescue=rescue,
            tracer=tracing.tracer if tracing else None,
            body_timing=BodyTiming(
                timeout=settings.body_timeout,
                min_rate=settings.body_min_rate,
                max_timeout=settings.body_max_timeout,
                max_readers=settings.max_body_readers,
                max_readers_per_client=settings.max_body_readers_per_client,
            ),
        )

    csrf = (
        Middleware(
            CsrfMiddleware,
            session_cookie=REFRESH_COOKIE,
            csrf_cookie=CSRF_COOKIE,
            csrf_header=CSRF_HEADER,
            on_error=middleware_error_renderer,
        )
        if settings.auth_cookies
        else None
    )
    routes = build_routes(openapi_document)
    app = HotpathApp(
        wrap=wrap,
        routes=routes,
        exception_handlers=exception_handlers(log),
        lifespan=lifespan,
        # Inside the error boundary (the rescue): a bug while authenticating is a logged 500.
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                # The bound method, not the instance, as build_rate_limit passes classify: an
                # object's call goes through its type's call slot, unspecialized (callgrind,
                # bench/micro/job_costs.py token: 650 instructions a request).
                authenticate=identity.authenticator.__call__,
                on_error=middleware_error_renderer,
                handled=(AppError,),
                # Not read: routes open without credentials (a stale token sent by habit must
                # not fail a refresh), and /metrics, which checks its own scrape token.
                own_auth_paths=anonymous_paths(routes) | {"/metrics"},
            ),
            # After authentication: only requests it found no credentials on are checked.
            *([csrf] if csrf else []),
            # After authentication: the budget is the API key's or the user's.
            *([rate_limit[1]] if rate_limit else []),
        ],
    )
    app.state.settings = settings
    app.state.logger = log
    app.state.drain = drain_state
    app.state.keyring = identity.keyring
    app.state.session_cookies = (
        SessionCookies(max_age=settings.session_lifetime_seconds) if settings.auth_cookies else None
    )
    app.state.metrics_registry = exposition_registry(registry)
    register_build_info(app.state.metrics_registry)
    app.state.metric_flushers = metric_flushers
    app.state.openapi_document = openapi_document
    return app


def app_from_env() -> HotpathApp:
    """granian's factory target: settings from the environment of the worker process."""
    from server.runtime.settings import load_settings

    return create_app(load_settings())
