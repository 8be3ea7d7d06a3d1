"""An email address has one spelling: the one its account is unique by, found by and mailed to.

``normalize_email`` applies Unicode NFKC to the whole address, so compatibility spellings (the
Kelvin sign U+212A, full-width letters, ligatures) become the characters they stand for. The
part before the ``@`` must then be plain ASCII (RFC 5322 atext and dots); hotpath sends no
SMTPUTF8 mail, and there is no rule that says which non-ASCII local parts are one mailbox. The
whole address is then case-folded: RFC 5321 lets a host treat ``Ann`` and ``ann`` as two
mailboxes, but every major provider folds them, and an account is unique by its folded address.
The domain becomes its IDNA 2003 ASCII form (the standard library's ``idna`` codec: nameprep,
then punycode for each non-ASCII label), so ``bücher.de`` is ``xn--bcher-kva.de``.

Mail goes to the normalised address too, never to the spelling a client sent: an account made
with ``\\u212aim@example.com`` is the account of ``kim@example.com``, and only that mailbox can
confirm it.

The key column ``users.email_normalized`` is ``lower(normalize(email, NFKC) COLLATE "C")``
(migrations/0009): the identity on every address this module returns (lower-case ASCII), and
equal to ``normalize_email`` for every address it accepts whose NFKC form is ASCII, which is how
migration 0009 re-keys existing rows in SQL (tests/users/test_email_address.py checks both).
"""

from __future__ import annotations

import string
import unicodedata

from server.web.errors import ValidationFailed

MAX_LENGTH = 254  # RFC 5321's path limit, less the angle brackets
# RFC 5322 atext, plus the dots between atoms.
_LOCAL = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.")
_LABEL = frozenset(string.ascii_lowercase + string.digits + "-")
_ASCII_UPPER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class EmailRefused(ValueError):
    """The address has no normalised form; the message says why, for the client."""


def normalize_email(address: str) -> str:
    """The account spelling of ``address``; raises EmailRefused when there is none."""
    text = unicodedata.normalize("NFKC", address)
    local, at, domain = text.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise EmailRefused("An address has one @ with text on both sides (after NFKC).")
    if not set(local) <= _LOCAL:
        raise EmailRefused(
            "The part before @ must be ASCII letters, digits, dots or one of "
            "!#$%&'*+-/=?^_`{|}~ (after NFKC normalisation)."
        )
    try:
        ascii_domain = domain.casefold().encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise EmailRefused("The domain is not a valid (internationalised) domain name.") from None
    if not all(label and set(label) <= _LABEL for label in ascii_domain.split(".")):
        raise EmailRefused(
            "The domain must be dot-separated labels of letters, digits and hyphens."
        )
    normalized = f"{local.lower()}@{ascii_domain}"
    if len(normalized) > MAX_LENGTH:
        raise EmailRefused(f"The address is longer than {MAX_LENGTH} characters once normalised.")
    return normalized


def account_email(address: str, pointer: str = "/email") -> str:
    """``normalize_email`` for a request: a refused address is a 422 pointing at ``pointer``."""
    try:
        return normalize_email(address)
    except EmailRefused as refused:
        raise ValidationFailed(
            "The email address is not accepted.",
            errors=[{"pointer": pointer, "detail": str(refused)}],
        ) from None


def normalize_email_prefix(prefix: str) -> str:
    """What the admin listing compares with the start of each account's key: the key's own
    expression (NFKC, ASCII letters lower-cased). A domain matches in its IDNA ASCII form."""
    return unicodedata.normalize("NFKC", prefix).translate(_ASCII_UPPER)
