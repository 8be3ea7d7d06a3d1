"""The one-off commands: migrate and seed (and the preparation ``make run`` does)."""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from server.audit.repository import AuditRepository
from server.auth.password_policy import password_problems
from server.auth.passwords import PasswordHasher
from server.catalog.seed import seed_products
from server.commands.seed import SeedResult, missing_logins_hint, progress, seed
from server.db.database import Database, create_pool
from server.db.devdb import resolve_database
from server.db.migrate import migrate
from server.db.sqlfiles import load_queries
from server.runtime.paths import MIGRATIONS_DIR
from server.runtime.settings import Settings
from server.users.email_address import EmailRefused, normalize_email
from server.users.repository import EmailTaken, NewUser, UsersRepository
from server.web.context import RequestContext


async def apply_migrations(settings: Settings, logger: FilteringBoundLogger) -> None:
    if settings.db_pooler == "transaction" and settings.database_direct_url is None:
        # The migration lock is a session's: through a transaction pooler its unlock could
        # reach another server connection and leave it held (server/db/migrate.py).
        raise SystemExit(
            "HOTPATH_DB_POOLER=transaction: migrations need a direct connection to PostgreSQL;"
            " set HOTPATH_DATABASE_DIRECT_URL"
        )
    applied = await migrate(
        settings.migration_url, MIGRATIONS_DIR, log=lambda line: logger.info("migrate", step=line)
    )
    logger.info("migrations_current", applied=[m.name for m in applied])
    await normalize_stored_emails(settings, logger)


async def normalize_stored_emails(settings: Settings, logger: FilteringBoundLogger) -> int:
    """Rewrites the stored addresses migration 0009 could not normalise in SQL (an
    internationalised domain becomes its IDNA ASCII form); returns how many. One that cannot be
    (refused, or another account has that address) is logged and left: nobody can find its
    account by address until an operator changes it."""
    pool = await create_pool(settings.with_pool_size(1, 2))
    db = Database(pool, acquire_timeout=settings.db_acquire_timeout)
    users = UsersRepository(load_queries())
    changed = 0
    try:
        async with db.connection() as conn:
            stored = await users.unnormalized_emails(conn)
        for user_id, email in stored:
            try:
                normalized = normalize_email(email)
                async with db.transaction() as conn:
                    changed += await users.change_email(conn, user_id, email, normalized)
            except EmailRefused as refused:
                logger.warning("email_not_normalized", user_id=user_id, reason=str(refused))
            except EmailTaken:
                logger.warning("email_not_normalized", user_id=user_id, reason="address taken")
    finally:
        await db.close()
    if stored:
        logger.info("emails_normalized", changed=changed, left=len(stored) - changed)
    return changed


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
    elif not result.logins:
        logger.warning("demo_logins_unknown", detail=missing_logins_hint(settings.data_dir))
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
    try:
        email = normalize_email(email)
    except EmailRefused as refused:
        raise SystemExit(f"The email is not accepted: {refused}") from None
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
