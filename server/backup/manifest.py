"""The manifest written beside every dump: what the file must hash to, which schema it holds,
and what its snapshot held (row counts, the audit trail's digest), for a restore to check.

It names the database, never its address or password. ``<dump>.json`` beside ``<dump>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from server.backup.repository import AppliedMigration, AuditTrail
from server.runtime.files import write_new

FORMAT = 1
SUFFIX = ".dump"
MANIFEST_SUFFIX = ".json"
_CHUNK = 1 << 20


class ManifestError(Exception):
    """A manifest is missing, unreadable, or does not match its dump."""


@dataclass(frozen=True, slots=True)
class Manifest:
    file: str  # the dump's name, in the same folder
    size_bytes: int
    sha256: str
    database: str
    server_version: str
    pg_dump_version: str
    migrations: list[AppliedMigration]
    row_counts: dict[str, int]
    audit: AuditTrail
    started_at: dt.datetime
    snapshot_at: dt.datetime
    finished_at: dt.datetime

    @property
    def schema_version(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "format": FORMAT,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "database": self.database,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "schema_version": self.schema_version,
            "migrations": [
                {"version": m.version, "name": m.name, "checksum": m.checksum}
                for m in self.migrations
            ],
            "row_counts": self.row_counts,
            "audit": {
                "events": self.audit.events,
                "last_id": self.audit.last_id,
                "digest": self.audit.digest,
            },
            "started_at": self.started_at.isoformat(),
            "snapshot_at": self.snapshot_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = orjson.loads(data)
            if doc.get("format") != FORMAT:
                raise ManifestError(f"unknown manifest format {doc.get('format')!r}")
            return cls(
                file=str(doc["file"]),
                size_bytes=int(doc["size_bytes"]),
                sha256=str(doc["sha256"]),
                database=str(doc["database"]),
                server_version=str(doc["server_version"]),
                pg_dump_version=str(doc["pg_dump_version"]),
                migrations=[
                    AppliedMigration(int(m["version"]), str(m["name"]), str(m["checksum"]))
                    for m in doc["migrations"]
                ],
                row_counts={str(k): int(v) for k, v in doc["row_counts"].items()},
                audit=AuditTrail(
                    int(doc["audit"]["events"]),
                    int(doc["audit"]["last_id"]),
                    str(doc["audit"]["digest"]),
                ),
                started_at=dt.datetime.fromisoformat(doc["started_at"]),
                snapshot_at=dt.datetime.fromisoformat(doc["snapshot_at"]),
                finished_at=dt.datetime.fromisoformat(doc["finished_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"unreadable manifest: {exc}") from None


def dump_name(database: str, at: dt.datetime) -> str:
    """``hotpath-<database>-20261207T031500.123Z.dump``: sorts by time, names no secret."""
    utc = at.astimezone(dt.UTC)
    return f"hotpath-{database}-{utc:%Y%m%dT%H%M%S}.{utc.microsecond // 1000:03d}Z{SUFFIX}"


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(dump: Path, manifest: Manifest) -> Path:
    """Written whole or not at all: a dump without its manifest is no backup (restore refuses
    it and retention leaves it alone)."""
    path = manifest_path(dump)
    write_new(path, manifest.to_json())
    return path


def read_checked(dump: Path) -> Manifest:
    """The dump's manifest, once the dump is shown to be the very file it describes."""
    path = manifest_path(dump)
    try:
        manifest = Manifest.from_json(path.read_bytes())
    except OSError as exc:
        raise ManifestError(f"no manifest for {dump.name}: {exc.strerror}") from None
    if manifest.file != dump.name:
        raise ManifestError(f"{path.name} describes {manifest.file}, not {dump.name}")
    try:
        size = dump.stat().st_size
    except OSError as exc:
        raise ManifestError(f"cannot read {dump.name}: {exc.strerror}") from None
    if size != manifest.size_bytes:
        raise ManifestError(
            f"{dump.name} has {size} bytes, its manifest says {manifest.size_bytes}"
        )
    if sha256_of(dump) != manifest.sha256:
        raise ManifestError(f"{dump.name} does not match its manifest's sha256: damaged")
    return manifest
