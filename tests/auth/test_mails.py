"""The account mails' texts (server/auth/mails.py): each token mail names its request, method,
URL and a JSON body that parses, with the token also alone on a line; and no line is long
enough for the quoted-printable encoding to split it, so the .eml files read as written."""

from __future__ import annotations

import json

import pytest

from server.auth import mails
from server.runtime.mail import OutgoingEmail, compose

BASE = "https://api.example.com"
TOKEN = "Xy7_" + "a1B2-c3D4" * 4 + "zzz"  # 43 characters, the URL-safe alphabet


def body_after(text: str, request_line: str) -> object:
    after = text.split(f"{request_line}\nContent-Type: application/json\n\n", 1)[1]
    return json.loads(after.split("\n\n", 1)[0])


@pytest.mark.parametrize(
    ("message", "request_line", "body"),
    [
        (
            mails.verification(BASE, "ada@example.com", TOKEN),
            f"POST {BASE}/v1/auth/email/verify",
            {"token": TOKEN},
        ),
        (
            mails.password_reset(BASE, "ada@example.com", TOKEN),
            f"POST {BASE}/v1/auth/password/reset",
            {"token": TOKEN, "password": "<your new password>"},
        ),
        (
            mails.register_notice(BASE, "ada@example.com", TOKEN),
            f"POST {BASE}/v1/auth/password/reset",
            {"token": TOKEN, "password": "<your new password>"},
        ),
    ],
)
def test_a_token_mail_names_its_request_and_body(
    message: OutgoingEmail, request_line: str, body: dict[str, str]
) -> None:
    assert body_after(message.text, request_line) == body
    assert TOKEN in message.text.splitlines()  # alone on its line, for copying


def test_no_line_is_split_in_the_eml_file() -> None:
    for message in (
        mails.verification(BASE, "ada@example.com", TOKEN),
        mails.password_reset(BASE, "ada@example.com", TOKEN),
        mails.register_notice(BASE, "ada@example.com", TOKEN),
        mails.register_notice(BASE, "ada@example.com", None),
    ):
        raw = compose(message, "hotpath <no-reply@example.com>").as_bytes().decode()
        assert "=\n" not in raw, raw  # no quoted-printable soft line break
        assert max(len(line) for line in message.text.splitlines()) <= 76
    notice = mails.register_notice(BASE, "ada@example.com", None)
    assert f"{BASE}/docs" in notice.text
    assert "POST" not in notice.text  # a notice without a token asks for nothing
