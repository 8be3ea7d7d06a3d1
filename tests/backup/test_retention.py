"""Which backups retention removes: past the newest `keep`, older than `max_age`, never the
newest one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from server.backup.retention import Kept, expired

NOW = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


def _backups(*hours_ago: int) -> list[Kept]:
    return [Kept(Path(f"b{h}.dump"), NOW - dt.timedelta(hours=h)) for h in hours_ago]


def names(kept: list[Kept]) -> list[str]:
    return [k.dump.name for k in kept]


def test_count_and_age_each_remove_what_they_exceed() -> None:
    backups = _backups(1, 7, 13, 49, 100)
    assert names(expired(backups, keep=3, max_age=None, now=NOW)) == ["b49.dump", "b100.dump"]
    assert names(expired(backups, keep=None, max_age=dt.timedelta(hours=12), now=NOW)) == [
        "b13.dump",
        "b49.dump",
        "b100.dump",
    ]
    assert names(expired(backups, keep=4, max_age=dt.timedelta(days=3), now=NOW)) == ["b100.dump"]
    assert expired(backups, keep=None, max_age=None, now=NOW) == []


def test_the_newest_backup_stays_even_past_every_limit() -> None:
    backups = _backups(500, 900)
    gone = expired(backups, keep=1, max_age=dt.timedelta(hours=1), now=NOW)
    assert [k.dump.name for k in gone] == ["b900.dump"]
