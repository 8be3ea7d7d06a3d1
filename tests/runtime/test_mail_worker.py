"""Mail through the outbox: a request only writes its mail (sealed) in its own transaction, and
the worker hands it to a real SMTP server on loopback (aiosmtpd). A temporary refusal is tried
again, a permanent one or an expired token ends it, a mail whose worker died goes out once its
lease runs out, two workers at once send each mail once, SIGTERM lets a mail being sent finish,
finished mails are pruned, and no log line carries a token."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from server.app import HotpathApp
from server.db.database import Database, create_pool
from server.db.mail_outbox import MailOutbox
from server.db.sqlfiles import load_queries
from server.runtime.mail import OutgoingEmail, SmtpMailer
from server.runtime.mail_worker import MailConfig, MailMetrics, MailWorker
from server.runtime.settings import Settings
from server.web.state import app_container
from tests.fixtures.databases import migrated_database
from tests.fixtures.support import free_port

ROOT = Path(__file__).resolve().parents[2]
SENDER = "hotpath <no-reply@hotpath.test>"


class Inbox:
    """An SMTP server's handler: keeps what it accepts; refuses the first ``busy`` messages with
    a 451 (try later) and any recipient at refused.test with a 550 (never)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.busy = 0
        self.refusals = 0
        self.delay = 0.0  # seconds each message's DATA takes
        self.receiving = 0  # DATA commands begun

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.endswith("@refused.test"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.receiving += 1
        await asyncio.sleep(self.delay)
        if self.busy > 0:
            self.busy -= 1
            self.refusals += 1
            return "451 4.3.0 busy, try later"
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def migrated_db() -> AsyncIterator[str]:
    """A database of each test's own: no other test's mails in the worker's way."""
    async with migrated_database("mail") as url:
        yield url


@pytest.fixture
def settings(settings: Settings, smtp: tuple[Inbox, int]) -> Settings:
    return dataclasses.replace(
        settings, smtp_url=f"smtp://127.0.0.1:{smtp[1]}?starttls=false&timeout=5"
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(await create_pool(settings), acquire_timeout=10.0)
    try:
        yield database
    finally:
        await database.close()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def request_body(mail_text: str, path: str) -> Any:
    """The JSON body of the request the mail names (after the POST line and its header)."""
    after = mail_text.split(f"{path}\nContent-Type: application/json\n\n", 1)[1]
    return json.loads(after.split("\n\n", 1)[0])


def smtp_worker(
    db: Database,
    outbox: MailOutbox,
    port: int,
    logger: FilteringBoundLogger,
    *,
    config: MailConfig | None = None,
    metrics: MailMetrics | None = None,
) -> MailWorker:
    """The worker's mail loop, in this process, handing mail to the SMTP server on ``port``."""
    return MailWorker(
        db,
        outbox=outbox,
        mailer=SmtpMailer("127.0.0.1", port, sender=SENDER, starttls=False, timeout=2),
        config=config or MailConfig(),
        logger=logger,
        metrics=metrics,
    )


def worker_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HOTPATH_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "HOTPATH_SECRET_KEY": settings.secret_key,
        "HOTPATH_DATA_DIR": str(log.parent),
        "HOTPATH_EMBEDDED_DB": "false",
        "HOTPATH_LOG_LEVEL": "info",
        "HOTPATH_SMTP_URL": settings.smtp_url or "",
        "HOTPATH_MAIL_FROM": SENDER,
        "HOTPATH_WEBHOOK_POLL_SECONDS": "0.05",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "server", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def test_a_registration_mail_leaves_through_the_worker(
    http: httpx.AsyncClient,
    settings: Settings,
    smtp: tuple[Inbox, int],
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    inbox, _ = smtp
    address = "ada@example.com"
    answer = await http.post(
        "/v1/auth/register",
        json={"email": address, "password": "correct horse battery staple", "display_name": "A"},
    )
    assert answer.status_code == 202, answer.text
    # The request wrote the mail and sent nothing: no worker runs yet.
    row = await db.fetchrow("SELECT kind, status, sealed FROM mail_outbox")
    assert row is not None
    assert (row["kind"], row["status"]) == ("email_verify", "pending")
    assert address.encode() not in row["sealed"]  # sealed: no address, no token in the clear
    assert inbox.messages == []

    log = tmp_path / "worker.log"
    worker = worker_process(settings, log)
    try:
        await eventually(lambda: _truthy(inbox.to(address)))
        await eventually(lambda: _status(db, "sent"))
    finally:
        worker.terminate()
        assert worker.wait(30) == 0
    (message,) = inbox.to(address)
    assert message["From"] == SENDER
    body = str(message.get_content()).replace("\r\n", "\n")
    token = next(line for line in body.splitlines() if len(line) == 43 and " " not in line)
    # The mail names the request to send: method, URL and the JSON body with the token in it.
    assert f"POST {settings.public_url}/v1/auth/email/verify\n" in body
    assert request_body(body, "/v1/auth/email/verify") == {"token": token}
    verified = await http.post("/v1/auth/email/verify", json={"token": token})
    assert verified.status_code == 204, verified.text
    # Nothing of it is kept once it is sent, and the worker logged it without its content.
    sealed = await db.fetchval("SELECT sealed FROM mail_outbox")
    assert sealed == b""
    text = log.read_text()
    assert '"mail_sent"' in text
    assert token not in text
    assert address not in text


async def test_sigterm_lets_the_mail_being_sent_finish(
    http: httpx.AsyncClient,
    settings: Settings,
    smtp: tuple[Inbox, int],
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    inbox, _ = smtp
    inbox.delay = 1.5  # the SMTP server takes its time over the message
    answer = await http.post(
        "/v1/auth/register",
        json={"email": "eve@example.com", "password": "correct horse battery", "display_name": "E"},
    )
    assert answer.status_code == 202
    worker = worker_process(settings, tmp_path / "worker.log")
    try:
        await eventually(lambda: _truthy(inbox.receiving))
        worker.send_signal(signal.SIGTERM)  # mid-conversation
        assert await asyncio.to_thread(worker.wait, 30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert len(inbox.to("eve@example.com")) == 1
    row = await db.fetchrow("SELECT status, attempts FROM mail_outbox")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("sent", 1)  # recorded before it stopped


async def test_a_temporary_refusal_is_retried_a_permanent_one_is_not(
    settings: Settings,
    smtp: tuple[Inbox, int],
    database: Database,
    db: asyncpg.Connection,
    logger: FilteringBoundLogger,
) -> None:
    inbox, port = smtp
    inbox.busy = 2  # the first two messages get a 451
    outbox = MailOutbox(load_queries(), settings.secret_key)
    async with database.transaction() as conn:
        for to in ("ok@example.com", "gone@refused.test"):
            message = OutgoingEmail(to=to, subject="Reset your password", text="token-ab12\n")
            await outbox.add(conn, message, "password_reset", keep_trying=dt.timedelta(hours=1))
    metrics = MailMetrics(CollectorRegistry())
    config = MailConfig(poll_seconds=0.02, retry_base_seconds=0.05)
    mail = smtp_worker(database, outbox, port, logger, config=config, metrics=metrics)
    stop = asyncio.Event()
    running = asyncio.create_task(mail.run(stop))
    try:
        await eventually(lambda: _none_pending(db))
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    ok, gone = await db.fetch(
        "SELECT status, attempts, last_error, sealed FROM mail_outbox ORDER BY id"
    )
    assert len(inbox.to("ok@example.com")) == 1
    assert inbox.refusals >= 1
    assert (ok["status"], ok["last_error"]) == ("sent", None)
    assert ok["attempts"] >= 2  # refused at least once, then sent
    # A 550 for the recipient: dead at its first attempt, and the reason kept.
    assert (gone["status"], gone["attempts"]) == ("dead", 1)
    assert "550" in gone["last_error"]
    assert gone["sealed"] == b""
    assert metrics.attempts.labels("sent")._value.get() == 1
    assert metrics.dead._value.get() == 1


async def test_two_workers_at_once_send_each_mail_once(
    settings: Settings,
    smtp: tuple[Inbox, int],
    database: Database,
    db: asyncpg.Connection,
    logger: FilteringBoundLogger,
) -> None:
    inbox, port = smtp
    outbox = MailOutbox(load_queries(), settings.secret_key)
    total = 60
    async with database.transaction() as conn:
        for n in range(total):
            message = OutgoingEmail(to=f"user-{n}@example.com", subject="Confirm", text="t\n")
            await outbox.add(conn, message, "email_verify", keep_trying=dt.timedelta(hours=1))
    config = MailConfig(batch=5, poll_seconds=0.02)
    workers = [smtp_worker(database, outbox, port, logger, config=config) for _ in range(2)]
    stop = asyncio.Event()
    running = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        await eventually(lambda: _none_pending(db))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 30)
    received = sorted(str(m["To"]) for m in inbox.messages)
    assert received == sorted(f"user-{n}@example.com" for n in range(total))  # once each
    assert await db.fetchval("SELECT max(attempts) FROM mail_outbox") == 1


async def test_an_expired_mail_is_given_up_and_an_unreadable_one_says_why(
    settings: Settings, database: Database, db: asyncpg.Connection, logger: FilteringBoundLogger
) -> None:
    queries = load_queries()
    message = OutgoingEmail(to="ada@example.com", subject="Confirm your email", text="t\n")
    async with database.transaction() as conn:
        # Nobody listens on this SMTP port, and the token would be dead by the first retry.
        await MailOutbox(queries, settings.secret_key).add(
            conn, message, "email_verify", keep_trying=dt.timedelta(seconds=0)
        )
        # Sealed under another HOTPATH_SECRET_KEY.
        await MailOutbox(queries, "another-secret-key-" + "x" * 32).add(
            conn, message, "email_verify", keep_trying=dt.timedelta(hours=1)
        )
    # Nobody listens on that port.
    mail = smtp_worker(database, MailOutbox(queries, settings.secret_key), free_port(), logger)
    assert await mail.send_due_once() == 2
    rows = await db.fetch("SELECT status, attempts, last_error FROM mail_outbox ORDER BY id")
    assert [(r["status"], r["attempts"]) for r in rows] == [("dead", 1), ("dead", 1)]
    assert "ConnectionRefusedError" in rows[0]["last_error"]
    assert "HOTPATH_SECRET_KEY" in rows[1]["last_error"]
    assert await mail.send_due_once() == 0


async def test_a_mail_whose_worker_died_goes_out_when_its_lease_runs_out(
    settings: Settings,
    smtp: tuple[Inbox, int],
    database: Database,
    db: asyncpg.Connection,
    logger: FilteringBoundLogger,
) -> None:
    inbox, port = smtp
    outbox = MailOutbox(load_queries(), settings.secret_key)
    message = OutgoingEmail(to="ada@example.com", subject="Confirm your email", text="t\n")
    async with database.transaction() as conn:
        await outbox.add(conn, message, "email_verify", keep_trying=dt.timedelta(hours=1))
        # A worker claimed it for 0.3 s, then died without a word.
        (claimed,) = await outbox.claim(conn, limit=10, lease_seconds=0.3, token=uuid.uuid4())
    assert claimed.message == message
    mail = smtp_worker(database, outbox, port, logger)
    assert await mail.send_due_once() == 0  # still leased to the dead worker
    await eventually(lambda: _claimed_by(mail))
    assert len(inbox.to("ada@example.com")) == 1
    row = await db.fetchrow("SELECT status, attempts FROM mail_outbox")
    assert row is not None
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_finished_mails_are_pruned_after_the_retention(
    settings: Settings, database: Database, db: asyncpg.Connection, logger: FilteringBoundLogger
) -> None:
    outbox = MailOutbox(load_queries(), settings.secret_key)
    message = OutgoingEmail(to="ada@example.com", subject="Confirm your email", text="t\n")
    async with database.transaction() as conn:
        for _ in range(3):
            await outbox.add(conn, message, "email_verify", keep_trying=dt.timedelta(hours=1))
    await db.execute(
        "UPDATE mail_outbox SET status = 'sent', finished_at = now() - interval '2 hours'"
        " WHERE id = (SELECT min(id) FROM mail_outbox)"
    )
    await db.execute(
        "UPDATE mail_outbox SET status = 'dead', finished_at = now()"
        " WHERE id = (SELECT max(id) FROM mail_outbox)"
    )
    config = MailConfig(retention_seconds=3600, prune_batch=1)
    mail = smtp_worker(database, outbox, free_port(), logger, config=config)
    assert await mail.prune_once() == 1  # the old sent one; the recent dead and the pending stay
    assert sorted(await db.fetchval("SELECT array_agg(status) FROM mail_outbox")) == [
        "dead",
        "pending",
    ]


async def test_a_reset_mail_names_the_request_and_its_body(
    app: HotpathApp, http: httpx.AsyncClient, settings: Settings, smtp: tuple[Inbox, int]
) -> None:
    """The in-process app's mail, sent by the worker loop: the reset request is named in full,
    with its JSON body and a placeholder for the password."""
    inbox, port = smtp
    address = "bob@example.com"
    answer = await http.post(
        "/v1/auth/register",
        json={"email": address, "password": "correct horse battery staple", "display_name": "B"},
    )
    assert answer.status_code == 202
    forgot = await http.post("/v1/auth/password/forgot", json={"email": address})
    assert forgot.status_code == 202
    container = app_container(app)
    await container.accounts.drain()
    outbox = MailOutbox(container.queries, settings.secret_key)
    mail = smtp_worker(container.db, outbox, port, container.logger)
    while await mail.send_due_once():
        pass
    (reset,) = [m for m in inbox.to(address) if "Reset" in m["Subject"]]
    body = str(reset.get_content()).replace("\r\n", "\n")
    token = next(line for line in body.splitlines() if len(line) == 43 and " " not in line)
    assert f"POST {settings.public_url}/v1/auth/password/reset\n" in body
    reset_body = request_body(body, "/v1/auth/password/reset")
    assert reset_body == {"token": token, "password": "<your new password>"}


async def _truthy(value: object) -> bool:
    return bool(value)


async def _status(db: asyncpg.Connection, status: str) -> bool:
    return bool(await db.fetchval("SELECT bool_and(status = $1) FROM mail_outbox", status))


async def _none_pending(db: asyncpg.Connection) -> bool:
    return not await db.fetchval("SELECT count(*) FROM mail_outbox WHERE status = 'pending'")


async def _claimed_by(mail: MailWorker) -> bool:
    return bool(await mail.send_due_once())
