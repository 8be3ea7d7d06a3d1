"""Which passwords we accept, after NIST SP 800-63B section 3.1.1.2.

Length and guessability only: no composition rules (a digit, a capital), which make passwords
harder to remember, not to guess. ``common_passwords.txt`` is zxcvbn's ``passwords`` frequency
list (zxcvbn 4.5.0, MIT; 30,000 entries from leaked-password corpora), lower-cased, copied into
the package: a worker holds a 3.6 MiB set (5 ms to load) instead of importing zxcvbn (19 MiB);
a test keeps it equal to zxcvbn's.
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache
from pathlib import Path

MIN_LENGTH = 12
MAX_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

# Stripped from both ends before the list lookup: "Password1234!" is "password" to a cracker.
_DECORATION = string.digits + string.punctuation + " "
# Runs of neighbouring keys; a password inside one of these (or its reverse) is a "sequence".
_WALKS = (
    "01234567890123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "1q2w3e4r5t6y7u8i9o0p",
)


@cache
def common_passwords() -> frozenset[str]:
    with COMMON_PASSWORDS_FILE.open(encoding="utf-8") as lines:
        return frozenset(line.rstrip("\n") for line in lines)


def password_problems(password: str, *, email: str) -> list[str]:
    """Every reason ``password`` is refused for the account ``email``; empty when it is fine."""
    # NFKC, as PasswordHasher does before hashing: the policy judges the password that is
    # stored, so "password1234" spelled in full-width letters is "password1234" here too.
    password = unicodedata.normalize("NFKC", password)
    folded = password.casefold()
    problems = []
    # Code points after normalisation, so "é" counts once however the client composed it.
    if len(password) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters.")
    elif len(password) > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH} characters."]
    elif _is_guessable(folded):
        problems.append("This password is too common or too predictable: choose another.")
    email = email.strip().casefold()
    local_part = email.rpartition("@")[0]
    if (email and email in folded) or (len(local_part) >= 3 and local_part in folded):
        problems.append("Do not use your email address in your password.")
    return problems


def _is_guessable(folded: str) -> bool:
    unit = _repeated_unit(folded)
    # A repeated password is as strong as what it repeats: "aaaa…", "Summer!Summer!".
    if len(unit) < MIN_LENGTH or any(unit in walk or unit in walk[::-1] for walk in _WALKS):
        return True
    common = common_passwords()
    return folded in common or unit in common or unit.strip(_DECORATION) in common


def _repeated_unit(text: str) -> str:
    """The shortest string that ``text`` repeats: "abcabcabc" gives "abc"."""
    period = (text + text).find(text, 1)
    return text[:period] if 0 < period < len(text) else text
