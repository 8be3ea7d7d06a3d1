"""Outgoing email behind a small Protocol: SMTP in production, ``.eml`` files in development.

Bodies carry one-time tokens (verification, reset), so nothing here ever logs a body.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from structlog.typing import FilteringBoundLogger

DEFAULT_TIMEOUT = 10.0


class MailError(Exception):
    """A message could not be handed over; the text never holds the body. ``permanent``: it
    never will be (a malformed message, or the server refused it with a 5xx), so do not retry."""

    def __init__(self, text: str, *, permanent: bool = False) -> None:
        super().__init__(text)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    async def send(self, message: OutgoingEmail) -> None: ...


def compose(message: OutgoingEmail, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(usegmt=True)
    # Without a domain, make_msgid asks socket.getfqdn(), which can block on DNS.
    mail["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    mail.set_content(message.text)
    return mail


class SmtpMailer:
    """Hands each message to an SMTP server, with stdlib ``smtplib`` on a worker thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool,
        implicit_tls: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self._password = username, password
        self.starttls, self.implicit_tls, self.timeout = starttls, implicit_tls, timeout

    async def send(self, message: OutgoingEmail) -> None:
        try:
            mail = compose(message, self.sender)
        except ValueError as error:  # a CR or LF in a header: refuse, never inject
            raise MailError(f"cannot compose the message: {error}", permanent=True) from error
        await asyncio.to_thread(self._deliver, mail)

    def _deliver(self, mail: EmailMessage) -> None:
        # The timeout bounds the connect and every reply, so a dead server fails in seconds.
        try:
            if self.implicit_tls:
                context = ssl.create_default_context()
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise MailError(
                f"SMTP {self.host}:{self.port} failed: {reason}", permanent=_refused(error)
            ) from error


class LogMailer:
    """Development: writes each message to ``directory`` and logs where, never what."""

    def __init__(
        self, directory: Path, logger: FilteringBoundLogger, *, sender: str = "hotpath@localhost"
    ) -> None:
        self.directory, self.sender, self._logger = directory, sender, logger

    async def send(self, message: OutgoingEmail) -> None:
        try:
            mail = compose(message, self.sender)
            path = await asyncio.to_thread(self._write, mail.as_bytes())
        except (ValueError, OSError) as error:
            raise MailError(f"cannot write the message: {error}") from error
        self._logger.info(
            "mail_written", recipient=message.to, subject=message.subject, path=str(path)
        )

    def _write(self, content: bytes) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.eml"
        # Created 0600 from the start: the file holds a live token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        return path


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to hand mail over, read from an SMTP URL."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    starttls: bool
    implicit_tls: bool
    timeout: float


def parse_smtp_url(smtp_url: str) -> SmtpServer:
    """``smtp://user:pass@host:587?starttls=true`` or ``smtps://host``; ValueError if it is bad.

    ``starttls`` defaults to true and ``timeout`` (seconds) to 10. Errors never echo the URL,
    which holds a password.
    """
    url = urlsplit(smtp_url)
    query = {key: values[-1] for key, values in parse_qs(url.query).items()}
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise ValueError("the SMTP URL must look like smtp://host:port or smtps://host:port")
    implicit_tls = url.scheme == "smtps"
    starttls = not implicit_tls and _flag(query.get("starttls", "true"))
    if url.username and not (starttls or implicit_tls):
        raise ValueError("SMTP credentials need TLS: use smtps:// or starttls=true")
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
        port = url.port
    except ValueError:
        raise ValueError("the SMTP URL has a bad port or timeout") from None
    if port == 0:
        raise ValueError("the SMTP URL has a bad port or timeout")
    if not 0 < timeout <= 300:
        raise ValueError("the SMTP timeout must be more than 0 and at most 300 seconds")
    return SmtpServer(
        host=url.hostname,
        port=port or (465 if implicit_tls else 587 if starttls else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password is not None else None,
        starttls=starttls,
        implicit_tls=implicit_tls,
        timeout=timeout,
    )


def build_mailer(
    *, smtp_url: str | None, sender: str, data_dir: Path, logger: FilteringBoundLogger
) -> Mailer:
    """SMTP when ``smtp_url`` is set (see parse_smtp_url), else ``.eml`` files in data_dir."""
    if not smtp_url:
        return LogMailer(data_dir / "mail", logger, sender=sender)
    server = parse_smtp_url(smtp_url)
    return SmtpMailer(
        server.host,
        server.port,
        sender=sender,
        username=server.username,
        password=server.password,
        starttls=server.starttls,
        implicit_tls=server.implicit_tls,
        timeout=server.timeout,
    )


def _refused(error: Exception) -> bool:
    """The server refused this message for good (5xx to the sender, a recipient or the data);
    a 5xx to the login is our configuration, fixed by an operator, so it is worth retrying."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    return False


def _flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError("starttls in the SMTP URL must be true or false")
