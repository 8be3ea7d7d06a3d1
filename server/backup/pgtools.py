"""pg_dump and pg_restore as child processes: found on PATH or in a given directory, given the
address without its password, their error output kept for the message when they fail."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from server.backup.libpq import Target


class ToolFailed(Exception):
    """pg_dump or pg_restore is missing or exited with an error."""


def tool(name: str, bin_dir: Path | None) -> str:
    found = shutil.which(name, path=str(bin_dir)) if bin_dir else shutil.which(name)
    if found is None:
        where = str(bin_dir) if bin_dir else "PATH"
        raise ToolFailed(f"{name} not found in {where} (install the PostgreSQL client tools)")
    return found


async def _run(args: list[str], target: Target) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=target.environment(),
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        name = Path(args[0]).name
        detail = err.decode(errors="replace").strip()[-2000:]
        raise ToolFailed(f"{name} exited with {process.returncode}: {detail}")
    return out.decode(errors="replace")


async def version(name: str, bin_dir: Path | None) -> str:
    """``pg_dump (PostgreSQL) 15.14`` and the like."""
    return (await _run([tool(name, bin_dir), "--version"], Target("", None))).strip()


async def dump(target: Target, out: Path, *, snapshot: str, bin_dir: Path | None) -> None:
    """The whole database in pg_dump's custom format (compressed, restorable object by object),
    as of ``snapshot``, which a transaction of the caller's exported and keeps open."""
    await _run(
        [
            tool("pg_dump", bin_dir),
            "--format=custom",
            f"--snapshot={snapshot}",
            f"--file={out}",
            f"--dbname={target.url}",
        ],
        target,
    )


async def restore(target: Target, dump_file: Path, *, clean: bool, bin_dir: Path | None) -> None:
    """Into ``target`` in one transaction: it has all of the backup or, on any error, nothing.
    Objects belong to whoever restores (no owners, no grants from the source)."""
    args = [
        tool("pg_restore", bin_dir),
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        "--no-privileges",
        f"--dbname={target.url}",
    ]
    if clean:
        args += ["--clean", "--if-exists"]
    await _run([*args, str(dump_file)], target)
