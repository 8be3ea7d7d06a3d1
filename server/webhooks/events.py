"""The event types an endpoint can subscribe to, and the glob patterns that name them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

# What the services write to the outbox (server/catalog/service.py, server/orders/service.py).
EVENT_TYPES = frozenset(
    {
        "product.created",
        "product.updated",
        "product.deleted",
        "stock.changed",
        "order.placed",
        "order.cancelled",
        "order.fulfilled",
    }
)
PING = "webhook.ping"
# Letters, digits, '_' and '.', with '*' as the only wildcard (any run of characters).
PATTERN = r"^(\*|[a-z0-9_]+(\.([a-z0-9_]+|\*))*)$"
_PATTERN = re.compile(PATTERN)


def valid_pattern(pattern: str) -> bool:
    return _PATTERN.fullmatch(pattern) is not None


def matches(patterns: Iterable[str], event_type: str) -> bool:
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def matches_something(pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(t, pattern) for t in EVENT_TYPES)
