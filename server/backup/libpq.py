"""A database address split into what may be shown and the password, which never may be.

pg_dump and pg_restore get the URL without its password and the password through PGPASSWORD
in their environment: a password in an argument shows in ``ps`` to every user of the host,
and the URL is what logs and errors print.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

# The audit digest hashes rows as PostgreSQL prints them: fix what the printing depends on.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "application_name": "hotpath-backup",
}
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # no password in it: safe to log and to pass as an argument
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("a database URL starts with postgresql://")
        password = unquote(parts.password) if parts.password is not None else None
        host = parts.netloc.rpartition("@")[2]
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}@{host}" if user else host
        return cls(urlunsplit(parts._replace(netloc=netloc)), password)

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.lstrip("/") or "postgres"

    def with_database(self, name: str) -> Target:
        return Target(urlunsplit(urlsplit(self.url)._replace(path="/" + name)), self.password)

    def environment(self) -> dict[str, str]:
        """The child process' environment: ours, with the password when the URL had one."""
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.url,
            password=self.password,
            timeout=CONNECT_TIMEOUT,
            server_settings=SESSION_SETTINGS,
            statement_cache_size=0,
        )


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
