"""The account mails' texts. Each one that carries a token names the request to send it in,
method, URL and JSON body, with the token also alone on a line of its own for copying. Prose is
wrapped at 72 characters and the JSON has a field a line, so no line of the message is split
by its quoted-printable encoding (the .eml files of development read as the mail does)."""

from __future__ import annotations

import json
import textwrap

from server.runtime.mail import OutgoingEmail


def verification(public_url: str, to: str, token: str) -> OutgoingEmail:
    return OutgoingEmail(
        to=to,
        subject="Confirm your email",
        text=_text(
            "Confirm your email address by sending this request:",
            _request(public_url, "/v1/auth/email/verify", {"token": token}),
            "The token alone:",
            token,
            "It expires in 48 hours. If you did not create an account, do not confirm it: "
            "ignore this message.",
        ),
    )


def password_reset(public_url: str, to: str, token: str) -> OutgoingEmail:
    return OutgoingEmail(
        to=to,
        subject="Reset your password",
        text=_text(
            "Set a new password by sending this request, with your new password in it:",
            _reset_request(public_url, token),
            "The token alone:",
            token,
            "It works once and expires in 30 minutes. If you did not ask for it, ignore this "
            "message.",
        ),
    )


def register_notice(public_url: str, to: str, claim: str | None) -> OutgoingEmail:
    """To the owner of a taken address; ``claim``, a reset token, when the account there was
    never confirmed (setting its password takes it)."""
    subject = "Someone tried to register with your email"
    if claim is None:
        return OutgoingEmail(
            to=to,
            subject=subject,
            text=_text(
                "Somebody (maybe you) tried to create an account with this address, which "
                "already has one. If that was you, sign in or reset your password at "
                f"{public_url}/docs. Otherwise you can ignore this message."
            ),
        )
    return OutgoingEmail(
        to=to,
        subject=subject,
        text=_text(
            "Somebody (maybe you) tried to create an account with this address. It already "
            "has one, made earlier and never confirmed, so nobody can sign in to it; an "
            "earlier confirmation link for it no longer works. To make it yours, set its "
            "password by sending this request, with your new password in it:",
            _reset_request(public_url, claim),
            "The token alone:",
            claim,
            "That confirms the address too. It works once and expires in 30 minutes. If you "
            "did not try to register, ignore this message.",
        ),
    )


def _text(*paragraphs: str) -> str:
    """Paragraphs a blank line apart; a paragraph of several lines (a request) stays as it is."""
    return (
        "\n\n".join(
            paragraph
            if "\n" in paragraph
            else textwrap.fill(paragraph, 72, break_long_words=False, break_on_hyphens=False)
            for paragraph in paragraphs
        )
        + "\n"
    )


def _reset_request(public_url: str, token: str) -> str:
    # The password is the reader's to fill in: a placeholder, shown as such.
    body = {"token": token, "password": "<your new password>"}
    return _request(public_url, "/v1/auth/password/reset", body)


def _request(public_url: str, path: str, body: dict[str, str]) -> str:
    # A field a line, so no line is long.
    json_body = json.dumps(body, indent=2)
    return f"POST {public_url}{path}\nContent-Type: application/json\n\n{json_body}"
