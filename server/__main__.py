"""python -m server: serve | migrate | seed | create-admin | openapi | worker | cluster |
backup | restore."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from server.runtime.env_reader import is_host
from server.runtime.logs import configure_logging
from server.runtime.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (granian)")
    serve.add_argument("--host", type=_host, help="default: HOTPATH_HOST")
    serve.add_argument("--port", type=_integer(1, 65535), help="default: HOTPATH_PORT")
    serve.add_argument("--workers", type=_integer(1, 256), help="default: HOTPATH_WORKERS")
    serve.add_argument(
        "--prepare",
        action="store_true",
        help="first create the database if missing, migrate, and load demo data if empty",
    )
    serve.add_argument(
        "--with-worker",
        action="store_true",
        help="also run the worker (python -m server worker) beside the server: mail and "
        "webhooks go out from one command (make run)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="share a port another server already listens on (SO_REUSEPORT); "
        "without it a taken port is an error",
    )

    commands.add_parser("migrate", help="apply pending migrations")

    seed = commands.add_parser("seed", help="load demo data into an empty database")
    seed.add_argument("--users", type=int, default=1000, help="bulk accounts to add")
    seed.add_argument("--products", type=int, default=1000, help="catalog size (COPY)")

    admin = commands.add_parser("create-admin", help="create an administrator account")
    admin.add_argument("--email", required=True)
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )

    commands.add_parser("worker", help="run the webhook delivery worker (any number may run)")

    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--out", type=Path, default=None, help="file (default: stdout)")

    cluster = commands.add_parser(
        "cluster", help="run replicas behind nginx, scraped by Prometheus (compose, no Docker)"
    )
    cluster.add_argument("--replicas", type=_integer(1, 32), default=3, help="default: 3")
    cluster.add_argument(
        "--port", type=_integer(1, 65535), default=8080, help="nginx's, on 127.0.0.1 (8080)"
    )
    cluster.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="logs, configurations and cluster.json (default: a temporary one, removed at exit)",
    )
    cluster.add_argument(
        "--migrate", action="store_true", help="every replica migrates before serving, at once"
    )
    cluster.add_argument(
        "--prepare",
        action="store_true",
        help="first create the database if missing, migrate, and load demo data if empty",
    )

    backup = commands.add_parser(
        "backup", help="write a logical backup (pg_dump) and its manifest; prints its path last"
    )
    backup.add_argument("--to", type=Path, required=True, help="folder of the backups")
    backup.add_argument(
        "--keep", type=_integer(1, 100_000), default=14, help="newest backups kept (14)"
    )
    backup.add_argument(
        "--max-age-days",
        type=_integer(1, 100_000),
        default=None,
        help="also remove backups older than this (the newest one always stays)",
    )
    backup.add_argument("--pg-bin", type=Path, default=None, help="pg_dump's folder (PATH)")

    restore = commands.add_parser(
        "restore", help="restore a backup into a database (created if missing)"
    )
    restore.add_argument("file", type=Path, help="the .dump file; its .json manifest beside it")
    restore.add_argument("--into", required=True, help="the target's postgresql:// URL")
    restore.add_argument(
        "--verify",
        action="store_true",
        help="first restore into a scratch database and check it; then check the target too",
    )
    restore.add_argument(
        "--clean",
        action="store_true",
        help="replace what the backup holds in a target that is not empty (refused otherwise)",
    )
    restore.add_argument("--pg-bin", type=Path, default=None, help="pg_restore's folder (PATH)")

    args = parser.parse_args(argv)
    if args.command == "openapi":
        return _openapi(args.out)
    settings = _settings()
    logger = configure_logging(settings.log_level)
    if args.command == "serve":
        from server.commands.serve import serve_forever

        try:
            return serve_forever(
                settings,
                logger,
                host=args.host,
                port=args.port,
                workers=args.workers,
                prepare=args.prepare,
                reuse_port=args.reuse_port,
                with_worker=args.with_worker,
            )
        except SettingsError as exc:
            raise SystemExit(str(exc)) from None
    if args.command == "cluster":
        from server.commands.cluster import run_cluster

        try:
            return run_cluster(
                settings,
                logger,
                replicas=args.replicas,
                port=args.port,
                run_dir=args.run_dir,
                migrate=args.migrate,
                prepare=args.prepare,
            )
        except SettingsError as exc:
            raise SystemExit(str(exc)) from None
    if args.command in ("backup", "restore"):
        return asyncio.run(_backups(args, settings, logger))
    from server.commands import tasks

    if args.command == "migrate":
        return asyncio.run(tasks.migrate_command(settings, logger))
    if args.command == "worker":
        return asyncio.run(_worker(settings, logger))
    if args.command == "create-admin":
        password = _read_password(args.password_stdin)
        return asyncio.run(tasks.create_admin_command(settings, logger, args.email, password))
    return asyncio.run(
        tasks.seed_command(settings, logger, users=args.users, products=args.products)
    )


async def _worker(settings: Settings, logger: FilteringBoundLogger) -> int:
    from server.commands.worker import run_worker
    from server.db.devdb import resolve_database

    if not settings.production:
        settings = await resolve_database(settings, logger)
    return await run_worker(settings, logger)


async def _backups(
    args: argparse.Namespace, settings: Settings, logger: FilteringBoundLogger
) -> int:
    if args.command == "restore":
        from server.commands.restore import restore_command

        return await restore_command(
            logger,
            dump=args.file,
            into=args.into,
            check=args.verify,
            clean=args.clean,
            bin_dir=args.pg_bin,
        )
    import datetime as dt

    from server.commands.backup import backup_command

    max_age = dt.timedelta(days=args.max_age_days) if args.max_age_days else None
    return await backup_command(
        settings, logger, to=args.to, keep=args.keep, max_age=max_age, bin_dir=args.pg_bin
    )


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}")
        return value

    return parse


def _host(text: str) -> str:
    if not is_host(text):
        raise argparse.ArgumentTypeError("must be an IP address or a host name")
    return text


def _read_password(from_stdin: bool) -> str:
    """Never a default and never an argument (it would show in ps and shell history)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("The passwords do not match.")
    return first


def _openapi(out: Path | None) -> int:
    from server.app import create_app

    # Building the app generates a signing key: into a directory that goes away again.
    with tempfile.TemporaryDirectory(prefix="hotpath-openapi-") as scratch:
        settings = Settings(secret_key="x" * 32, data_dir=Path(scratch))
        app = create_app(settings, logger=configure_logging("warning"))
        document = app.state.openapi_document()
    if out is None:
        sys.stdout.buffer.write(document + b"\n")
    else:
        out.write_bytes(document + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
