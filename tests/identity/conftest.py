"""Fixtures for the identity tests: an app with cheap argon2 parameters, account factories,
logins and the development mailbox (LogMailer writes .eml files under data_dir/mail)."""

from __future__ import annotations

import email
import email.policy
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp, create_app
from server.auth.passwords import PasswordHasher
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings
from server.users.repository import NewUser, UsersRepository
from tests.support import client_for, lifespan


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class Tokens:
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # argon2 at test strength: the suite logs in hundreds of times on two cores.
    return replace(settings, argon2_time_cost=1, argon2_memory_kib=1024)


@pytest.fixture
def app(settings: Settings, logger: FilteringBoundLogger) -> HotpathApp:
    return create_app(settings, logger=logger)


@pytest.fixture
async def http(app: HotpathApp) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan(app), client_for(app) as client:
        yield client


def unique_ip() -> str:
    """A client address of its own: per-address login counters stay out of other tests."""
    a, b, c = secrets.token_bytes(3)
    return f"10.{a}.{b}.{max(c, 1)}"


@pytest.fixture
async def other_ip(app: HotpathApp, http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """For logins expected to fail: their per-address counter stays out of other tests."""
    async with client_for(app, client=(unique_ip(), 1)) as client:
        yield client


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own to the run's database (outside the app's pool)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()


class Accounts:
    """Creates accounts straight in the database (the register flow has its own tests)."""

    def __init__(self, app: HotpathApp, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http
        self.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
        self.repo = UsersRepository(load_queries())

    async def create(self, *roles: str, status: str = "active") -> Account:
        address = f"user-{secrets.token_hex(5)}@example.com"
        password = "correct horse " + secrets.token_hex(6)
        digest = await self.hasher.hash(password)
        async with self.app.state.container.db.transaction() as conn:
            user = await self.repo.create(
                conn,
                NewUser(address, digest, "Test", status=status, roles=roles or ("customer",)),
            )
        return Account(user.id, address, password)

    async def login(self, account: Account) -> Tokens:
        response = await self.http.post(
            "/v1/auth/login", json={"email": account.email, "password": account.password}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return Tokens(body["access_token"], body["refresh_token"])

    async def create_and_login(self, *roles: str) -> tuple[Account, Tokens]:
        account = await self.create(*roles)
        return account, await self.login(account)


@pytest.fixture
async def accounts(app: HotpathApp, http: httpx.AsyncClient) -> AsyncIterator[Accounts]:
    factory = Accounts(app, http)
    yield factory
    factory.hasher.close()


class Mailbox:
    def __init__(self, directory: Path, app: HotpathApp) -> None:
        self.directory = directory
        self.app = app

    async def messages(self, to: str | None = None) -> list[email.message.EmailMessage]:
        await self.app.state.container.accounts.drain()  # mail goes out in the background
        found = []
        for path in sorted(self.directory.glob("*.eml")) if self.directory.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, email.message.EmailMessage)
            if to is None or message["To"] == to:
                found.append(message)
        return found

    async def token(self, to: str, subject_word: str) -> str:
        """The one-time token of the newest matching message (its own line in the body)."""
        messages = [m for m in await self.messages(to) if subject_word in m["Subject"]]
        assert messages, f"no {subject_word!r} mail for {to}"
        body = str(messages[-1].get_content())
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        return next(line for line in lines if " " not in line and len(line) >= 32)


@pytest.fixture
def mailbox(app: HotpathApp, settings: Settings) -> Mailbox:
    return Mailbox(settings.data_dir / "mail", app)
