"""Points in time as the API takes them: with an offset, and within what can be stored."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

# RFC 3339 needs an offset: a naive time would be read in the server process's local zone,
# and could not be compared with now (that was a 500).
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]


_EDGES = (dt.datetime.min, dt.datetime.max)


def check_storable(**instants: dt.datetime | None) -> None:
    """ValueError (msgspec makes it a validation error) for an instant that leaves Python's
    year 1-9999 once moved to UTC, as the driver does (9999-12-31T20:00-05:00 was a 500), or
    lands on either end of it, which asyncpg stores as -infinity or infinity and reads back
    without a time zone (a key expiring at 9999-12-31T23:59:59.999999Z was a 500)."""
    for name, value in instants.items():
        if value is None:
            continue
        try:
            utc = value.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError(f"invalid field `{name}`: out of range once in UTC") from None
        if utc.replace(tzinfo=None) in _EDGES:
            raise ValueError(f"invalid field `{name}`: out of range once in UTC")
