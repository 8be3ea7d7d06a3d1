"""Points in time as the API takes them: with an offset, and within what can be stored."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

# RFC 3339 needs an offset: a naive time would be read in the server process's local zone,
# and could not be compared with now (that was a 500).
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]


def check_storable(**instants: dt.datetime | None) -> None:
    """ValueError (msgspec makes it a validation error) for an instant that leaves Python's
    year 1-9999 once moved to UTC, as the driver does: 9999-12-31T20:00-05:00 was a 500."""
    for name, value in instants.items():
        if value is None:
            continue
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError(f"invalid field `{name}`: out of range once in UTC") from None
