"""read_query splits a query string itself when nothing in it is escaped: the pairs must be the
ones Starlette's ``request.query_params`` reads, for every query string."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from server.web.responses import _query_items

_QUERIES = [
    b"",
    b"&",
    b"&&limit=5&&",
    b"limit=50",
    b"limit=50&cursor=AbC-_09",
    b"limit",
    b"limit=",
    b"=",
    b"=x",
    b"a=b=c",
    b"q=a b",
    b"q=a+b",
    b"q=a%20b&x=%",
    b"q=%ZZ",
    b"q=caf\xc3\xa9",
    b"q=caf\xe9",
    b"q=x#y",
    b"a;b=c",
    b"q=\x00&\x00=1",
    b"limit=1&limit=2",
]


def test_the_pairs_are_starlettes() -> None:
    for raw in _QUERIES:
        assert _query_items(raw) == QueryParams(raw).multi_items(), raw


@given(st.lists(st.sampled_from([b"a", b"=", b"&", b"+", b"%", b"2", b"0", b" ", b"\xe9", b";"])))
def test_the_pairs_are_starlettes_for_any_query_string(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    assert _query_items(raw) == QueryParams(raw).multi_items()


@given(st.binary(max_size=40))
def test_the_pairs_are_starlettes_for_any_bytes(raw: bytes) -> None:
    assert _query_items(raw) == QueryParams(raw).multi_items()
