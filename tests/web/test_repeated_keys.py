"""A key given twice in one object is a 400 (RFC 7493, I-JSON), wherever the object is; the
fast proof that a body has no repeated key (``_no_repeated_keys``) never clears one that does,
and clears every body without one unless a ``\\u003`` escape could hide a ``:``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.web import errors
from server.web.responses import _no_repeated_keys, decode_json


def repeated_key(body: bytes) -> str | None:
    """The first key given twice in one object, read by the json module (the reference)."""
    found: list[str] = []

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in members:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(members)

    json.loads(body, object_pairs_hook=pairs)
    return found[0] if found else None


def refused(body: bytes) -> str:
    with pytest.raises(errors.MalformedJson) as caught:
        decode_json(body, object)
    return str(caught.value.detail)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"a":1,"a":2}', "a"),
        (b'{"a": 1, "b": 2, "a": 1}', "a"),
        (b'{"x":{"a":1,"a":2}}', "a"),  # nested
        (b'{"items":[{"q":1},{"q":1,"q":2}]}', "q"),  # in an array of objects
        (b'[[{"k":[],"k":{}}]]', "k"),
        (b'{"\\u0061":1,"a":2}', "a"),  # one key, two spellings
        (b'{"a":1,"\\u0061":2}', "a"),
        (b'{"a/b":1,"a\\/b":2}', "a/b"),
        (b'{"a\\"b":1,"a\\u0022b":2}', 'a"b'),  # an escaped quote in the key
        (b'{"a:":1,"a\\u003a":2}', "a:"),  # a colon in the key, and its escape
        (b'{"\\u003a":1,"\\u003A":2}', ":"),
        (b'{"k":"x:y:z","k":"\\u003a"}', "k"),
        (b'{"\xc3\xa9":1,"\\u00e9":2}', "\xe9"),
    ],
)
def test_a_key_given_twice_is_named_in_the_answer(body: bytes, key: str) -> None:
    assert refused(body) == (
        f"The request body gives the key {key!r} twice in one object: send it once."
    )
    assert not _no_repeated_keys(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"b":2}',
        b'{"items":[{"product_id":1,"quantity":1},{"product_id":2,"quantity":1}]}',
        b'{"a":{"a":{"a":1}}}',  # the same key in different objects
        b'{"a":"a","b":"a"}',
        b'{"a:b":"c:d","a":"::"}',  # colons inside keys and values
        b'{"a\\"":1,"a":2}',  # an escaped quote: two different keys
        b'{"a\\\\":1,"a":2}',  # an escaped backslash: two different keys
        b'{"\\u0061":1,"b":2}',
        b'{"a" : 1 , "b" :\n 2}',
    ],
)
def test_distinct_keys_are_accepted(body: bytes) -> None:
    assert decode_json(body, object) == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"b":2}',
        b'{"a":"x:y","b":[{"a":1},{"a":2}]}',
        b'{"a\\"":1,"a":2,"c":"\\n\\/\\u00e9"}',
    ],
)
def test_the_fast_proof_clears_bodies_without_a_colon_escape(body: bytes) -> None:
    assert _no_repeated_keys(body)


def test_a_colon_escape_is_left_to_the_exact_check() -> None:
    # "\u003a" decodes to ":", which the count could take for a member's: not proven clean.
    body = b'{"a":"\\u003a","b":1}'
    assert not _no_repeated_keys(body)
    assert decode_json(body, object) == {"a": ":", "b": 1}


# Keys from a small set, each in one of several spellings, so objects often repeat one.
_KEYS = ("a", "b", ":", 'a"', "a/b", "\xe9")
_CHARS = st.sampled_from(["a", "b", ":", '"', "\\", "/", "\xe9", "\u2028", "\n", " "])


def _spelled(text: str, how: int) -> str:
    if how == 0:
        return json.dumps(text, ensure_ascii=False)
    if how == 1:
        return json.dumps(text)
    if how == 2:
        return json.dumps(text, ensure_ascii=False).replace("/", "\\/")
    # every character as a \u escape, with hex digits in either case
    escaped = "".join(f"\\u{ord(c):04x}" for c in text)
    return '"' + (escaped.upper().replace("\\U", "\\u") if how == 4 else escaped) + '"'


_STRINGS = st.builds(_spelled, st.text(_CHARS, max_size=4), st.integers(0, 4))
_SCALARS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["true", "false", "null", "1.5e-7", "-0.0", "1E2"]),
    _STRINGS,
)


def _objects(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    member = st.tuples(st.sampled_from(_KEYS), st.integers(0, 4), values)
    return st.lists(member, max_size=4).map(
        lambda members: "{" + ",".join(f"{_spelled(k, how)}: {v}" for k, how, v in members) + "}"
    )


_JSON = st.recursive(
    _SCALARS,
    lambda values: st.one_of(
        st.lists(values, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        _objects(values),
    ),
    max_leaves=12,
)


@given(_JSON)
def test_the_fast_proof_agrees_with_the_json_module(text: str) -> None:
    body = text.encode()
    repeated = repeated_key(body)
    if _no_repeated_keys(body):
        assert repeated is None  # never clears a body that repeats a key
    elif b"\\u003" not in body:
        assert repeated is not None  # and clears every other body it can prove clean
    if repeated is None:
        assert decode_json(body, object) == json.loads(body)
    else:
        assert refused(body) == (
            f"The request body gives the key {repeated!r} twice in one object: send it once."
        )
