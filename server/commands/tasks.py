"""The one-off commands: migrate and seed (and the preparation ``make run`` does)."""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from server.audit.repository import AuditRepository
from server.auth.password_policy import password_problems
from server.auth.passwords import PasswordHasher
from server.catalog.seed import seed_products
from server.commands.seed import SeedResult, progress, seed
from server.db.database import Database, create_pool
from server.db.devdb import resolve_database
from server.db.migrate import migrate
from server.db.sqlfiles import load_queries
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from server.users.repository import EmailTaken, NewUser, UsersRepository
from server.web.context import RequestContext


async def apply_migrations(settings: Settings, logger: FilteringBoundLogger) -> None:
    applied = await migrate(
        settings.database_url, MIGRATIONS_DIR, log=lambda line: logger.info("migrate", step=line)
    )
    logger.info("migrations_current", applied=[m.name for m in applied])


async def load_demo_data(settings: Settings, *, users: int, products: int) -> SeedResult:
    pool = await create_pool(settings.with_pool_size(1, 2))
    db = Database(pool, acquire_timeout=settings.db_acquire_timeout)
    try:
        result = await seed(db, UsersRepository(load_queries()), settings.data_dir, users=users)
        await seed_products(db, products, progress)
        return result
    finally:
        await db.close()


async def prepare(
    settings: Settings, logger: FilteringBoundLogger, *, users: int, products: int = 1000
) -> Settings:
    """Database there, schema current, demo data in: what ``make run`` needs before serving."""
    settings = await resolve_database(settings, logger)
    await apply_migrations(settings, logger)
    result = await load_demo_data(settings, users=users, products=products)
    if result.created:
        logger.info("demo_data_loaded", accounts=result.created)
    return settings


async def migrate_command(settings: Settings, logger: FilteringBoundLogger) -> int:
    if not settings.production:
        settings = await resolve_database(settings, logger)
    await apply_migrations(settings, logger)
    return 0


async def seed_command(
    settings: Settings, logger: FilteringBoundLogger, *, users: int, products: int
) -> int:
    if not settings.production:
        settings = await resolve_database(settings, logger)
    result = await load_demo_data(settings, users=users, products=products)
    if result.created:
        logger.info("demo_data_loaded", accounts=result.created)
    else:
        logger.info("demo_data_present", detail="the database already has accounts")
    return 0


async def create_admin_command(
    settings: Settings, logger: FilteringBoundLogger, email: str, password: str
) -> int:
    problems = password_problems(password, email=email)
    if problems:
        raise SystemExit("The password is not accepted: " + "; ".join(problems))
    if not settings.production:
        settings = await resolve_database(settings, logger)
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib
    )
    pool = await create_pool(settings.with_pool_size(1, 2))
    db = Database(pool, acquire_timeout=settings.db_acquire_timeout)
    queries = load_queries()
    try:
        digest = await hasher.hash(password)
        async with db.transaction() as conn:
            user = await UsersRepository(queries).create(
                conn, NewUser(email, digest, "Administrator", roles=("admin",))
            )
            await AuditRepository(queries).record(
                conn,
                RequestContext(),
                "user.admin_created",
                target_type="user",
                target_id=str(user.id),
                details={"via": "cli"},
            )
    except EmailTaken:
        raise SystemExit(f"An account with the email {email} already exists.") from None
    finally:
        hasher.close()
        await db.close()
    logger.info("admin_created", user_id=user.id)
    return 0
