"""The lifespan-built object graph: pools, Redis, queries, repositories and services."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.apikeys.repository import ApiKeysRepository
from server.apikeys.service import ApiKeysService
from server.apikeys.verifier import ApiKeyVerifier
from server.audit.repository import AuditRepository
from server.audit.service import AuditService
from server.auth.account_service import AccountService
from server.auth.device_tokens import DeviceTokens
from server.auth.passwords import PasswordHasher
from server.auth.refresh_tokens import SuccessorSeal
from server.auth.repository import OneTimeTokens, RevocationStore, SessionsRepository
from server.auth.revocation import RevocationFeed
from server.auth.revoker import Revoker
from server.auth.service import AuthService, SessionPolicy
from server.auth.setup import Identity
from server.auth.throttle import LoginThrottle
from server.catalog.cache import ProductCache
from server.catalog.repository import ProductsRepository
from server.catalog.service import CatalogService
from server.db import sql_spans
from server.db.database import Database, create_pool
from server.db.devdb import database_name
from server.db.mail_outbox import MailOutbox
from server.db.outbox import Outbox
from server.db.replica_pools import attach_replicas
from server.db.sqlfiles import Queries, load_queries
from server.health.service import DrainState, HealthService
from server.orders.repository import OrdersRepository
from server.orders.service import OrdersService
from server.roles.repository import RolesRepository
from server.roles.service import RolesService
from server.runtime import background
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.redis_link import RedisLink, open_redis
from server.runtime.settings import Settings
from server.users.repository import UsersRepository
from server.users.service import UsersAdminService
from server.web.pagination import CursorCodec
from server.webhooks.repository import WebhooksRepository
from server.webhooks.service import WebhooksService
from server.webhooks.signing import SecretBox
from server.webhooks.ssrf import UrlGuard


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    logger: FilteringBoundLogger
    db: Database
    redis: RedisLink
    queries: Queries
    health: HealthService
    cursors: CursorCodec
    revocations: RevocationFeed
    auth: AuthService
    accounts: AccountService
    users_admin: UsersAdminService
    roles: RolesService
    audit: AuditService
    api_keys: ApiKeysService
    key_verifier: ApiKeyVerifier
    catalog: CatalogService
    orders: OrdersService
    webhooks: WebhooksService


HOUSEKEEPING_SECONDS = 60.0

ContainerFactory = Callable[
    [Settings, FilteringBoundLogger, DrainState, Identity, CollectorRegistry],
    AbstractAsyncContextManager[Container],
]


@asynccontextmanager
async def build_container(
    settings: Settings,
    logger: FilteringBoundLogger,
    drain: DrainState,
    identity: Identity,
    registry: CollectorRegistry,
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
) -> AsyncIterator[Container]:
    queries = load_queries()
    pool = await create_pool(
        settings,
        statement_cache_size=max(256, len(queries) * 2),
        connection_class=sql_spans.connection_class(queries),
    )
    db = Database(pool, acquire_timeout=settings.db_acquire_timeout)
    replicas = await attach_replicas(
        db,
        settings,
        statement_cache_size=max(256, len(queries) * 2),
        logger=logger,
        registry=registry,
    )
    passwords = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        max_concurrent=settings.password_hash_concurrency,
    )
    try:
        async with open_redis(
            settings.redis_url, timeout=settings.redis_timeout, logger=logger
        ) as redis:
            health = HealthService(
                db,
                redis,
                drain=drain,
                migrations_dir=migrations_dir,
                redis_required=settings.redis_required,
                timeout=settings.db_acquire_timeout,
            )
            feed = RevocationFeed(
                db=db,
                redis=redis,
                store=RevocationStore(queries),
                denylist=identity.denylist,
                logger=logger,
                # One channel per database: deployments (and test runs) sharing a Redis must
                # not apply each other's revocations.
                channel=f"hotpath:{database_name(settings.database_url)}:revocations",
            )
            namespace = f"hotpath:{database_name(settings.database_url)}"
            if replicas is not None:
                replicas.follow_writes(redis, namespace)  # read-your-writes on replicas
            product_cache = ProductCache(
                redis,
                logger,
                namespace=namespace,
                registry=registry,
                followed_ttl=settings.product_cache_seconds,
            )
            await product_cache.start()
            starting = await _start_revocations(feed, logger)
            health.add_gate("revocations", lambda: starting.done() and not starting.cancelled())
            try:
                container = _services(
                    settings,
                    logger,
                    db,
                    redis,
                    queries,
                    health,
                    feed,
                    identity,
                    passwords,
                    product_cache,
                )

                async def housekeep() -> None:
                    await container.auth.housekeeping()
                    await container.orders.housekeeping()

                housekeeping = background.repeat_async(
                    HOUSEKEEPING_SECONDS, housekeep, name="housekeeping", logger=logger
                )
                key_usage = background.repeat_async(
                    1.0, container.key_verifier.flush_usage, name="apikey-usage", logger=logger
                )
                identity.authenticator.attach_keys(container.key_verifier)
                try:
                    yield container
                    await container.accounts.drain()
                finally:
                    identity.authenticator.attach_keys(None)
                    await background.stop(key_usage)
                    await container.key_verifier.flush_usage()
                    await background.stop(housekeeping)
            finally:
                await background.stop(starting)
                await feed.stop()
                await product_cache.stop()
    finally:
        passwords.close()
        if replicas is not None:
            await replicas.close()
        await db.close()


async def _start_revocations(
    feed: RevocationFeed, logger: FilteringBoundLogger
) -> asyncio.Task[None]:
    """Load the revocations; if PostgreSQL cannot yet (the migrations have not run, say), keep
    retrying in the background while /readyz answers 503."""

    async def start(first_try: bool) -> None:
        while True:
            try:
                await feed.start()
                return
            except Exception as exc:
                if first_try:
                    raise
                logger.warning("revocations_unavailable", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    first = asyncio.create_task(start(first_try=True), name="revocations-start")
    try:
        await first
    except Exception as exc:
        logger.warning("revocations_unavailable", error=type(exc).__name__)
        return asyncio.create_task(start(first_try=False), name="revocations-retry")
    return first


def _services(
    settings: Settings,
    logger: FilteringBoundLogger,
    db: Database,
    redis: RedisLink,
    queries: Queries,
    health: HealthService,
    feed: RevocationFeed,
    identity: Identity,
    passwords: PasswordHasher,
    product_cache: ProductCache,
) -> Container:
    users = UsersRepository(queries)
    roles = RolesRepository(queries)
    sessions = SessionsRepository(queries)
    audit = AuditRepository(queries)
    revoker = Revoker(
        sessions,
        RevocationStore(queries),
        feed,
        keep_seconds=max(settings.access_token_ttl, settings.apikey_cache_seconds),
    )
    auth = AuthService(
        db,
        users=users,
        roles=roles,
        sessions=sessions,
        throttle=LoginThrottle(queries),
        audit=audit,
        revoker=revoker,
        passwords=passwords,
        codec=identity.codec,
        seal=SuccessorSeal(settings.secret_key),
        devices=DeviceTokens(settings.secret_key),
        policy=SessionPolicy(
            grace=dt.timedelta(seconds=settings.refresh_grace_seconds),
            idle=dt.timedelta(seconds=settings.session_idle_seconds),
            lifetime=dt.timedelta(seconds=settings.session_lifetime_seconds),
        ),
    )
    accounts = AccountService(
        db,
        users=users,
        tokens=OneTimeTokens(queries),
        throttle=LoginThrottle(queries),
        audit=audit,
        revoker=revoker,
        passwords=passwords,
        mail=MailOutbox(queries, settings.secret_key),
        public_url=settings.public_url,
        logger=logger,
        mail_budget=identity.account_mail,
    )
    api_keys = ApiKeysRepository(queries)
    products = ProductsRepository(queries)
    outbox = Outbox(queries)
    return Container(
        settings=settings,
        logger=logger,
        db=db,
        redis=redis,
        queries=queries,
        health=health,
        cursors=CursorCodec(settings.secret_key),
        revocations=feed,
        auth=auth,
        accounts=accounts,
        users_admin=UsersAdminService(db, users=users, roles=roles, audit=audit, revoker=revoker),
        roles=RolesService(db, roles=roles, audit=audit, revoker=revoker),
        audit=AuditService(db, audit=audit),
        api_keys=ApiKeysService(
            db,
            keys=api_keys,
            audit=audit,
            revoker=revoker,
            rotation_grace=dt.timedelta(seconds=settings.apikey_rotation_grace_seconds),
        ),
        catalog=CatalogService(
            db, products=products, cache=product_cache, audit=audit, outbox=outbox
        ),
        orders=OrdersService(
            db,
            orders=OrdersRepository(queries),
            products=products,
            cache=product_cache,
            outbox=outbox,
            need_verified_email=settings.orders_need_verified_email,
        ),
        webhooks=WebhooksService(
            db,
            endpoints=WebhooksRepository(queries),
            audit=audit,
            guard=url_guard(settings),
            box=SecretBox(settings.secret_key),
            rotation_grace=dt.timedelta(seconds=settings.webhook_rotation_grace_seconds),
            retry_horizon=dt.timedelta(seconds=settings.webhook_retry_horizon_seconds),
        ),
        key_verifier=ApiKeyVerifier(
            db,
            api_keys,
            audit,
            identity.denylist,
            logger,
            cache_seconds=settings.apikey_cache_seconds,
        ),
    )


def url_guard(settings: Settings) -> UrlGuard:
    return UrlGuard(
        allow_http=settings.webhook_allow_http, allow_networks=settings.webhook_allow_networks
    )
