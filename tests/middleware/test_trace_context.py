"""The W3C traceparent as the request id layer reads it (https://www.w3.org/TR/trace-context/)."""

from __future__ import annotations

import pytest

from middleware.trace_context import TraceParent, parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_header_gives_its_ids_and_flags() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01".encode()) == TraceParent(TRACE, SPAN, 1)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode()) == TraceParent(TRACE, SPAN, 0)


def test_a_later_version_may_append_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-later".encode()) == TraceParent(TRACE, SPAN, 1)


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{SPAN}-01",  # an all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # an all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE.upper()}-{SPAN}-01",  # lower-case hex only
        f"00-{TRACE[:-1]}-{SPAN}-01",  # a short trace id
        f"00-{TRACE}-{SPAN}",  # no flags
        f"00-{TRACE}-{SPAN}-1",
        f" 00-{TRACE}-{SPAN}-01",
        "",
    ],
)
def test_an_invalid_header_is_no_trace(value: str) -> None:
    assert parse_traceparent(value.encode()) is None
