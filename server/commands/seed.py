"""Demo data: three real logins (admin, staff, customer) plus as many bulk accounts as asked for.

The demo passwords are random per install (no default credentials) and kept in
``<data_dir>/demo_logins.json`` (mode 0600) so ``make run`` can print them again.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from server.auth.passwords import PasswordHasher
from server.db.database import Connection, Database
from server.users.repository import NewUser, UsersRepository

DEMO_ACCOUNTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("admin@example.com", "Demo Admin", ("admin",)),
    ("staff@example.com", "Demo Staff", ("staff",)),
    ("user@example.com", "Demo User", ("customer",)),
)
_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class SeedResult:
    created: int
    logins: dict[str, str]


def logins_file(data_dir: Path) -> Path:
    return data_dir / "demo_logins.json"


def read_logins(data_dir: Path) -> dict[str, str]:
    path = logins_file(data_dir)
    if not path.exists():
        return {}
    data: dict[str, str] = orjson.loads(path.read_bytes())
    return data


def missing_logins_hint(data_dir: Path) -> str:
    """Why a database that was already seeded shows no demo logins, and what to do about it.
    The passwords are random and kept only in the data directory that seeded the database."""
    return (
        f"no demo logins in {logins_file(data_dir)}: the database already had accounts when "
        "this checkout prepared it (another checkout or HOTPATH_DATA_DIR seeded it, or the file "
        "was deleted), and their random passwords are kept only where they were made. Use that "
        "demo_logins.json, give this checkout a database of its own "
        "(DATABASE_URL=postgresql://127.0.0.1:5432/hotpath_2 make run), or make an "
        "administrator: python -m server create-admin --email you@example.com"
    )


def _save_logins(data_dir: Path, logins: dict[str, str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = logins_file(data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(logins, option=orjson.OPT_INDENT_2))


def progress(label: str, done: int, total: int) -> None:
    if total and sys.stderr.isatty():
        width = 30
        filled = width * done // total
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r  {label:<8} [{bar}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def seed(db: Database, repo: UsersRepository, data_dir: Path, *, users: int) -> SeedResult:
    """Load demo data into an empty database; a database with accounts is left alone."""
    hasher = PasswordHasher()
    try:
        return await _seed(db, repo, data_dir, users, hasher)
    finally:
        hasher.close()


async def _seed(
    db: Database, repo: UsersRepository, data_dir: Path, users: int, hasher: PasswordHasher
) -> SeedResult:
    async with db.transaction() as conn:
        # Serialise concurrent seeders; the transaction-scoped lock ends with the transaction.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hotpath.seed'))")
        if await repo.count(conn) > 0:
            return SeedResult(0, read_logins(data_dir))
        logins: dict[str, str] = {}
        for email, name, roles in DEMO_ACCOUNTS:
            password = secrets.token_urlsafe(15)
            digest = await hasher.hash(password)
            user = await repo.create(conn, NewUser(email, digest, name, roles=roles))
            # Verified: example.com mailboxes confirm nothing, and the demo logins are there to
            # try everything, orders included (HOTPATH_ORDERS_NEED_VERIFIED_EMAIL).
            await repo.mark_email_verified(conn, user.id)
            logins[email] = password
        created = len(DEMO_ACCOUNTS) + await _bulk_users(conn, repo, users, hasher)
    _save_logins(data_dir, logins)
    return SeedResult(created, logins)


async def _bulk_users(
    conn: Connection, repo: UsersRepository, total: int, hasher: PasswordHasher
) -> int:
    if total <= 0:
        return 0
    # One hash for every bulk account: nobody logs in as them, and argon2 per row would take
    # minutes. Their password is random and discarded.
    shared_hash = await hasher.hash(secrets.token_urlsafe(24))
    done = 0
    while done < total:
        size = min(_BATCH, total - done)
        batch = (
            NewUser(f"member{n:07d}@example.com", shared_hash, f"Member {n}", roles=("customer",))
            for n in range(done + 1, done + size + 1)
        )
        done += await repo.copy_many(conn, batch)
        progress("users", done, total)
    return done
