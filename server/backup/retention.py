"""Which old backups go: those past the newest ``keep``, and those older than ``max_age``.

Only pairs of a dump and its manifest count as backups; anything else in the folder (a dump
whose manifest was never written, an operator's own files) is left alone. The backup just
made is never removed, whatever the limits say.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from server.backup.manifest import SUFFIX, Manifest, ManifestError, manifest_path


@dataclass(frozen=True, slots=True)
class Kept:
    dump: Path
    finished_at: dt.datetime


def backups_in(directory: Path) -> list[Kept]:
    """The folder's backups, newest first (by the time their manifest records)."""
    found = []
    for dump in directory.glob(f"hotpath-*{SUFFIX}"):
        try:
            manifest = Manifest.from_json(manifest_path(dump).read_bytes())
        except (OSError, ManifestError):
            continue
        if manifest.file == dump.name:
            found.append(Kept(dump, manifest.finished_at))
    return sorted(found, key=lambda k: k.finished_at, reverse=True)


def expired(
    backups: list[Kept], *, keep: int | None, max_age: dt.timedelta | None, now: dt.datetime
) -> list[Kept]:
    """``backups`` newest first; the first one (the newest) is always kept."""
    gone = []
    for rank, backup in enumerate(backups):
        if rank == 0:
            continue
        too_many = keep is not None and rank >= keep
        too_old = max_age is not None and now - backup.finished_at > max_age
        if too_many or too_old:
            gone.append(backup)
    return gone


def prune(
    directory: Path, *, keep: int | None, max_age: dt.timedelta | None, now: dt.datetime
) -> list[Path]:
    removed = []
    for backup in expired(backups_in(directory), keep=keep, max_age=max_age, now=now):
        # The manifest first: a dump left without one is no longer a backup to anyone.
        manifest_path(backup.dump).unlink(missing_ok=True)
        backup.dump.unlink(missing_ok=True)
        removed.append(backup.dump)
    return removed
