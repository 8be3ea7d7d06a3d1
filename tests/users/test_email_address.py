"""The one spelling of an address (server/users/email_address.py), and the key column's SQL
expression (migrations/0009), which must agree with it."""

from __future__ import annotations

import random
import string
import unicodedata

import asyncpg
import pytest

from server.users.email_address import EmailRefused, normalize_email, normalize_email_prefix

# The key column's expression, as migrations/0009 declares it.
KEY_SQL = 'SELECT lower(normalize(a, NFKC) COLLATE "C") FROM unnest($1::text[]) AS a'


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("\u212aim@example.com", "kim@example.com"),  # KELVIN SIGN is K under NFKC
        ("\uff21\uff4e\uff4e@\uff25xample.com", "ann@example.com"),  # full-width letters
        ("o\ufb03ce@example.com", "office@example.com"),  # the ffi ligature
        ("\u017fam@example.com", "sam@example.com"),  # LATIN SMALL LETTER LONG S
        ("ann@B\u00fccher.de", "ann@xn--bcher-kva.de"),  # IDNA 2003, whatever the case
        ("ann@STRASSE.de", "ann@strasse.de"),
        ("ann@stra\u00dfe.de", "ann@strasse.de"),  # IDNA 2003 maps sharp s to ss
        ("ann@\u0130stanbul.com", "ann@xn--istanbul-o0e.com"),  # not istanbul.com
        ("ann@example\u3002com", "ann@example.com"),  # an ideographic full stop is a dot
        ("first.last+tag@mail.example.com", "first.last+tag@mail.example.com"),
        ("Admin@LocalHost", "admin@localhost"),
    ],
)
def test_normalized_spelling(address: str, normalized: str) -> None:
    assert normalize_email(address) == normalized
    assert normalize_email(normalized) == normalized


@pytest.mark.parametrize(
    "address",
    [
        "\u0130nfo@example.com",  # dotted capital I: i + U+0307 once folded, not ASCII
        "\u00dfam@example.com",  # a non-ASCII local part
        "jos\u00e9@example.com",
        "a\ufe6bb@example.com",  # SMALL COMMERCIAL AT: NFKC makes a second @
        "ann@exa\ufe6bmple.com",
        "ann@",
        "@example.com",
        "a,b@example.com",  # a mail header would read two recipients
        '"ann"@example.com',
        "ann@exa..com",
        "ann@example.com.",
        "ann@exam_ple.com",
        "ann@[192.0.2.1]",
        "ann@exa\u200emple.com",  # a character nameprep prohibits
        "ann@\u05d0a.com",  # a label breaking IDNA's bidi rule
        "ann@" + "a" * 64 + ".com",  # a label too long
        "a" * 240 + "@" + "b\u00fc" * 5 + ".de",  # longer than 254 once in ASCII
    ],
)
def test_refused(address: str) -> None:
    with pytest.raises(EmailRefused):
        normalize_email(address)


def test_the_prefix_filter_is_the_key_expression() -> None:
    assert normalize_email_prefix("\uff21nn.\u212a") == "ann.k"
    assert normalize_email_prefix("\u00c4nn") == "\u00c4nn"  # only ASCII letters are lowered


def _addresses(count: int) -> list[str]:
    """Addresses from ASCII and characters NFKC turns into ASCII, cased at random."""
    rng = random.Random(20260112)
    compatibility = "\u212a\u212b\uff21\uff41\uff10\ufb00\ufb01\u017f\u2160\u00aa\u00b2\u2024"
    local = string.ascii_letters + string.digits + ".+-_'" + compatibility
    domain = string.ascii_letters + string.digits + "-" + compatibility
    return [
        "".join(rng.choices(local, k=rng.randint(1, 12)))
        + "@"
        + "".join(rng.choices(domain, k=rng.randint(1, 10)))
        + "."
        + "".join(rng.choices(string.ascii_letters, k=rng.randint(2, 4)))
        for _ in range(count)
    ]


async def test_the_key_expression_equals_the_normalisation_on_every_accepted_address(
    migrated_db: str,
) -> None:
    """What lets migration 0009 re-key existing rows in SQL: on every address whose NFKC form
    is ASCII and that normalize_email accepts, the SQL key is normalize_email's answer."""
    addresses = [
        *_addresses(3000),
        "Ann@Example.COM",
        "\u212aim@example.com",
        "\uff21\uff4e\uff4e@\uff25xample.com",
        "Admin@LocalHost",
    ]
    conn = await asyncpg.connect(migrated_db)
    try:
        keys = [row[0] for row in await conn.fetch(KEY_SQL, addresses)]
    finally:
        await conn.close()
    compared = 0
    for address, key in zip(addresses, keys, strict=True):
        if not unicodedata.normalize("NFKC", address).isascii():
            continue
        try:
            normalized = normalize_email(address)
        except EmailRefused:
            continue
        assert key == normalized, address
        compared += 1
    assert compared > 1000  # the generator is not mostly refused


async def test_the_key_expression_leaves_a_normalised_address_alone(migrated_db: str) -> None:
    """Every address the server stores is its own key."""
    normalized = [normalize_email(a) for a in ("Ann@B\u00fccher.de", "\u212aim@x.io", "a@b.c")]
    conn = await asyncpg.connect(migrated_db)
    try:
        keys = [row[0] for row in await conn.fetch(KEY_SQL, normalized)]
    finally:
        await conn.close()
    assert keys == normalized
