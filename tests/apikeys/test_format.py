from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.apikeys.format import MalformedKey, new_key, new_key_id, parse

SHAPE = re.compile(r"hp_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}")


def test_a_new_key_has_the_scannable_shape_and_parses_back() -> None:
    key_id = new_key_id()
    key = new_key(key_id)
    assert SHAPE.fullmatch(key)
    parsed = parse(key)
    assert parsed.key_id == key_id
    assert parsed.token == key


def test_keys_are_random() -> None:
    key_id = new_key_id()
    assert len({new_key(key_id) for _ in range(100)}) == 100
    assert len({new_key_id() for _ in range(100)}) == 100


@given(st.integers(min_value=3, max_value=53), st.sampled_from("0123456789abcXYZ"))
def test_any_single_character_typo_is_caught_by_the_checksum(position: int, char: str) -> None:
    key = new_key(new_key_id())
    if key[position] == char or key[position] == "_":
        return
    typo = key[:position] + char + key[position + 1 :]
    with pytest.raises(MalformedKey):
        parse(typo)


@pytest.mark.parametrize(
    "token",
    ["", "hp_", "gh_" + "a" * 53, "hp_short_key", "hp_" + "a" * 12 + "-" + "b" * 38],
)
def test_wrong_shapes_are_refused(token: str) -> None:
    with pytest.raises(MalformedKey):
        parse(token)
