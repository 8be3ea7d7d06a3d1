"""RESP on a connection of hotpath's own to one Redis server, made as coredis' client for the
same ``REDIS_URL`` makes its own: the server's address and how to connect (read from that
client's pool), the RESP2/RESP3 parser, command encoding, and the handshake (HELLO 3 with AUTH,
SELECT and CLIENT SETNAME when the URL has them).

Shared by the subscription's reader (resp_subscriber.py) and the tombstones' command
connection (resp_commands.py), the two places where coredis' per-call cost was measured too
high to keep (decision 0015). A Redis Cluster keeps coredis for both.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import coredis
from coredis.connection import TCPLocation, UnixDomainSocketLocation


class RespError(Exception):
    """Redis answered a command with an error (its text: never a credential)."""


@dataclass(frozen=True)
class ServerAddress:
    """Where and how coredis' client connects (one server); ``path`` for a Unix socket."""

    host: str = ""
    port: int = 0
    path: str | None = None
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    connect_timeout: float | None = None
    timeout: float | None = None

    @classmethod
    def of(cls, client: coredis.Redis[str]) -> ServerAddress:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        location = pool.location
        if isinstance(location, UnixDomainSocketLocation):
            host, port, path, tls = "", 0, location.path, None
        elif isinstance(location, TCPLocation):
            host, port, path, tls = location.host, location.port, None, kwargs.get("ssl_context")
        else:
            raise ValueError(f"no RESP connection to a {type(location).__name__}")
        return cls(
            host=host,
            port=port,
            path=path,
            tls=tls,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=kwargs.get("db") or 0,
            client_name=kwargs.get("client_name"),
            connect_timeout=kwargs.get("connect_timeout"),
            timeout=kwargs.get("stream_timeout"),
        )


class Push(list[object]):
    """A RESP3 push frame (``>``): what the server sends unasked, as opposed to a reply."""


def parse(buffer: bytes, at: int) -> tuple[object, int] | None:
    """The RESP2/RESP3 value starting at ``at`` and where the next one starts; None while it is
    incomplete. Bulk strings stay bytes."""
    end = buffer.find(b"\r\n", at)
    if end < 0:
        return None
    kind, line, at = buffer[at], buffer[at + 1 : end], end + 2
    if kind in b"$=!":  # bulk string, verbatim string, bulk error
        size = int(line)
        if size < 0:
            return None, at  # RESP2's null
        if len(buffer) < at + size + 2:
            return None
        data = buffer[at : at + size]
        if kind == ord("="):
            data = data[4:]  # "txt:"
        elif kind == ord("!"):
            return RespError(data.decode(errors="replace")), at + size + 2
        return data, at + size + 2
    if kind in b"*>~%|":  # array, push, set, map, attribute
        count = int(line)
        if kind in b"%|":
            count *= 2
        items: list[object] = []
        for _ in range(max(count, 0)):
            parsed = parse(buffer, at)
            if parsed is None:
                return None
            item, at = parsed
            items.append(item)
        if kind == ord("|"):  # attributes precede the value they describe: skip them
            return parse(buffer, at)
        if kind == ord(">"):
            return Push(items), at
        if kind == ord("%"):
            return dict(zip(items[::2], items[1::2], strict=True)), at
        return (items if count >= 0 else None), at
    if kind == ord("+"):
        return line.decode(errors="replace"), at
    if kind == ord("-"):
        return RespError(line.decode(errors="replace")), at
    if kind in b":(":
        return int(line), at
    if kind == ord("_"):
        return None, at
    if kind == ord(","):
        return float(line), at
    if kind == ord("#"):
        return line == b"t", at
    raise ConnectionError(f"not RESP: {bytes([kind])!r}")


def command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def open_transport(address: ServerAddress, protocol: asyncio.Protocol) -> None:
    """Connect ``protocol`` to ``address``, within its connect timeout (OSError, TimeoutError)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(address.connect_timeout):
        if address.path is not None:
            await loop.create_unix_connection(lambda: protocol, address.path)
        else:
            await loop.create_connection(
                lambda: protocol,
                address.host,
                address.port,
                ssl=address.tls,
                server_hostname=address.host if address.tls else None,
            )


def hello(address: ServerAddress) -> list[tuple[str | bytes, ...]]:
    """What coredis says first on a connection: HELLO 3 (with AUTH), SELECT, CLIENT SETNAME."""
    first: tuple[str | bytes, ...] = (b"HELLO", b"3")
    if address.username or address.password:
        first += (b"AUTH", address.username or "default", address.password or "")
    commands = [first]
    if address.db:
        commands.append((b"SELECT", str(address.db)))
    if address.client_name is not None:
        commands.append((b"CLIENT", b"SETNAME", address.client_name))
    return commands
