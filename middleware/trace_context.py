"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the ``traceparent`` header read
without any tracing library, so log lines can carry a caller's trace and span ids even with
tracing off.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import NamedTuple

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"

# version - trace-id - parent-id - trace-flags; a later version may append "-..." fields.
_TRACEPARENT = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?"
).fullmatch
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


class TraceParent(NamedTuple):
    trace_id: str  # 32 lower-case hex digits
    parent_id: str  # 16: the caller's span
    flags: int  # bit 0: sampled


# The valid traceparent the request came with (RequestIdMiddleware sets it, only then): what
# the request writes down for later work to link to (an outbox event) when tracing is off.
CALLER_TRACEPARENT: ContextVar[TraceParent | None] = ContextVar("caller_traceparent", default=None)


def parse_traceparent(value: bytes) -> TraceParent | None:
    """The header's ids, or None when the value is not a valid traceparent (then the request
    starts a trace of its own, as the specification says)."""
    match = _TRACEPARENT(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id.decode("ascii"), parent_id.decode("ascii"), int(flags, 16))
