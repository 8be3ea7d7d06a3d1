from __future__ import annotations

import email
import email.policy
import io
import socket
import stat
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from structlog.typing import FilteringBoundLogger

from server.runtime.mail import (
    LogMailer,
    MailError,
    OutgoingEmail,
    SmtpMailer,
    build_mailer,
)
from tests.fixtures.support import free_port

SENDER = "Hotpath <no-reply@hotpath.test>"
MESSAGE = OutgoingEmail(
    to="ada@example.com",
    subject="Reset your password",
    text="Open https://hotpath.test/reset#token=s3cr3t-one-time-token to choose a new one.\n",
)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[LoginPassword] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def authenticate(self, *args: Any) -> AuthResult:
        *_, auth_data = args
        self.logins.append(auth_data)
        ok = auth_data == LoginPassword(b"mailer", b"p@ss:word")
        return AuthResult(success=ok, handled=False)  # unhandled: aiosmtpd answers 535 itself


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,  # loopback only; production URLs must use TLS
    )
    controller.start()
    yield inbox, port
    controller.stop()


def smtp_mailer(port: int, **options: Any) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", port, sender=SENDER, starttls=False, timeout=5, **options)


async def test_smtp_delivers_headers_and_body(inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    box.messages.clear()
    await smtp_mailer(port).send(MESSAGE)
    (received,) = box.messages
    assert received["From"] == SENDER
    assert received["To"] == "ada@example.com"
    assert received["Subject"] == "Reset your password"
    assert received["Date"].datetime.tzinfo is not None
    assert abs(received["Date"].datetime.timestamp() - time.time()) < 60
    assert received["Message-ID"].endswith("@hotpath.test>")
    assert received.get_content().replace("\r\n", "\n") == MESSAGE.text


async def test_smtp_logs_in_when_given_credentials(inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    box.messages.clear()
    await smtp_mailer(port, username="mailer", password="p@ss:word").send(MESSAGE)
    assert box.logins[-1] == LoginPassword(b"mailer", b"p@ss:word")
    assert len(box.messages) == 1
    with pytest.raises(MailError, match="SMTPAuthenticationError"):
        await smtp_mailer(port, username="mailer", password="wrong").send(MESSAGE)


async def test_header_injection_is_refused(inbox: tuple[Inbox, int]) -> None:
    _, port = inbox
    hostile = OutgoingEmail(to="ada@example.com\r\nBcc: eve@example.com", subject="x", text="y")
    with pytest.raises(MailError, match="compose"):
        await smtp_mailer(port).send(hostile)


async def test_smtp_down_fails_fast_with_mail_error() -> None:
    start = time.monotonic()
    with pytest.raises(MailError, match="ConnectionRefusedError"):
        await smtp_mailer(free_port()).send(MESSAGE)
    assert time.monotonic() - start < 1


async def test_silent_smtp_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mailer = SmtpMailer(
            "127.0.0.1", listener.getsockname()[1], sender=SENDER, starttls=False, timeout=0.3
        )
        start = time.monotonic()
        with pytest.raises(MailError, match="timed out"):
            await mailer.send(MESSAGE)
        assert time.monotonic() - start < 2


async def test_log_mailer_writes_a_private_file_and_one_line_without_the_body(
    tmp_path: Path, logger: FilteringBoundLogger, log_stream: io.BytesIO
) -> None:
    await LogMailer(tmp_path / "mail", logger, sender=SENDER).send(MESSAGE)
    (path,) = (tmp_path / "mail").iterdir()
    assert path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    written = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(written, EmailMessage)
    assert written["To"] == "ada@example.com"
    assert written.get_content() == MESSAGE.text
    (line,) = log_stream.getvalue().splitlines()
    assert b"s3cr3t" not in line
    record = orjson.loads(line)
    assert record["message"] == "mail_written"
    assert record["recipient"] == "ada@example.com"
    assert record["subject"] == "Reset your password"
    assert record["path"] == str(path)


def test_build_mailer_without_url_writes_files(
    tmp_path: Path, logger: FilteringBoundLogger
) -> None:
    mailer = build_mailer(smtp_url=None, sender=SENDER, data_dir=tmp_path, logger=logger)
    assert isinstance(mailer, LogMailer)
    assert mailer.directory == tmp_path / "mail"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.test", ("mail.test", 587, True, False, None, None, 10.0)),
        ("smtp://mail.test:1025?starttls=false", ("mail.test", 1025, False, False, None, None, 10)),
        (
            "smtp://us%40er:p%40ss%3Aw@mail.test:2525?starttls=true&timeout=2.5",
            ("mail.test", 2525, True, False, "us@er", "p@ss:w", 2.5),
        ),
        ("smtps://u:p@mail.test", ("mail.test", 465, False, True, "u", "p", 10)),
    ],
)
def test_build_mailer_reads_smtp_urls(
    url: str, expected: tuple[Any, ...], logger: FilteringBoundLogger
) -> None:
    mailer = build_mailer(smtp_url=url, sender=SENDER, data_dir=Path("."), logger=logger)
    assert isinstance(mailer, SmtpMailer)
    seen = (mailer.host, mailer.port, mailer.starttls, mailer.implicit_tls, mailer.username)
    assert (*seen, mailer._password, mailer.timeout) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.test", "must look like"),
        ("smtp://", "must look like"),
        ("smtp://u:secret@mail.test?starttls=false", "need TLS"),
        ("smtp://mail.test?starttls=maybe", "true or false"),
        ("smtp://mail.test:99999", "bad port"),
        ("smtp://u:secret@mail.test?timeout=0", "timeout"),
    ],
)
def test_build_mailer_refuses_bad_urls_without_echoing_them(
    url: str, problem: str, logger: FilteringBoundLogger
) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        build_mailer(smtp_url=url, sender=SENDER, data_dir=Path("."), logger=logger)
    assert "secret" not in str(refused.value)
