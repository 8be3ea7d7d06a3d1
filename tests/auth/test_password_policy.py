from __future__ import annotations

import secrets
import unicodedata

import pytest

from server.auth.password_policy import (
    COMMON_PASSWORDS_FILE,
    MAX_LENGTH,
    common_passwords,
    password_problems,
)

EMAIL = "ada.lovelace@example.com"
STRONG = "violet tram ignores the moon"


def test_a_long_uncommon_password_passes() -> None:
    assert password_problems(STRONG, email=EMAIL) == []
    assert password_problems(secrets.token_urlsafe(16), email=EMAIL) == []


def test_no_composition_rules() -> None:
    assert password_problems("onlylowercaseletters", email=EMAIL) == []


def test_length_bounds() -> None:
    assert password_problems("x7Kp2mQ9vZ4", email=EMAIL) == ["Use at least 12 characters."]
    assert password_problems("x7Kp2mQ9vZ4w", email=EMAIL) == []
    at_most = "x7Kp2mQ9vZ4w" * 10 + "x7Kp2mQ9"
    assert len(at_most) == MAX_LENGTH
    assert password_problems(at_most, email=EMAIL) == []
    assert password_problems(at_most + "!", email=EMAIL) == ["Use at most 128 characters."]


def test_length_counts_code_points_after_nfc() -> None:
    eleven, twelve = (
        unicodedata.normalize("NFD", text) for text in ("crème brûlé", "crème brûlée")
    )
    assert (len(eleven), len(twelve)) == (14, 15)
    assert password_problems(eleven, email=EMAIL) == ["Use at least 12 characters."]
    assert password_problems(twelve, email=EMAIL) == []
    assert password_problems("ça été déjà Noël", email=EMAIL) == []
    assert password_problems("日本語のパスワードです", email=EMAIL) == [
        "Use at least 12 characters."
    ]
    assert password_problems("🦊🐙🦉🐝🦋🐢🦔🐧🦒🐳🦜🐌", email=EMAIL) == []


@pytest.mark.parametrize(
    "password",
    [
        "1qaz2wsx3edc4rfv",  # in the list as they are
        "qwerty123456",
        "123qweasdzxc",
        "LeaveMeAlone",  # the list is compared without case
        "Password123456",  # a listed password with digits or punctuation around it
        "iloveyou2024!",
        "!!football!!!",
        "monkeymonkey",  # a listed password repeated
    ],
)
def test_common_passwords_are_refused(password: str) -> None:
    assert password_problems(password, email=EMAIL) == [
        "This password is too common or too predictable: choose another."
    ]


@pytest.mark.parametrize(
    "password",
    [
        *("aaaaaaaaaaaa", "ñññññññññññññ", "abababababab", "123123123123", "xyzqxyzqxyzq"),
        *("123456789012", "abcdefghijkl", "lkjihgfedcba", "qwertyuiopas", "1q2w3e4r5t6y"),
    ],
)
def test_repeats_and_sequences_are_refused(password: str) -> None:
    assert password_problems(password, email=EMAIL) == [
        "This password is too common or too predictable: choose another."
    ]


@pytest.mark.parametrize(
    "password", ["my Ada.Lovelace secret", "ADA.LOVELACE@EXAMPLE.COM", "xxada.lovelacexx"]
)
def test_the_email_is_refused(password: str) -> None:
    assert password_problems(password, email=EMAIL) == [
        "Do not use your email address in your password."
    ]


def test_a_short_local_part_only_forbids_the_whole_address() -> None:
    assert password_problems("jo is on a long holiday", email="jo@example.com") == []
    assert password_problems("JO@example.com", email="jo@example.com") == [
        "Do not use your email address in your password."
    ]
    assert password_problems(STRONG, email="") == []


def test_every_problem_is_reported() -> None:
    assert password_problems("ada", email="ada@example.com") == [
        "Use at least 12 characters.",
        "Do not use your email address in your password.",
    ]


def test_the_list_is_zxcvbns_password_list() -> None:
    frequency_lists = pytest.importorskip("zxcvbn.frequency_lists")
    expected = [word.lower() for word in frequency_lists.FREQUENCY_LISTS["passwords"]]
    shipped = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    assert shipped == expected, (
        "regenerate server/auth/common_passwords.txt from zxcvbn's FREQUENCY_LISTS['passwords']"
    )
    assert len(common_passwords()) == 30_000
    assert common_passwords() is common_passwords()  # loaded once
