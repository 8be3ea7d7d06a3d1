"""The account mails' texts. Each one that carries a token names the request to send it in,
method, URL and JSON body, with the token also alone on a line of its own for copying."""

from __future__ import annotations

import json

from server.runtime.mail import OutgoingEmail


def verification(public_url: str, to: str, token: str) -> OutgoingEmail:
    return OutgoingEmail(
        to=to,
        subject="Confirm your email",
        text="Confirm your email address by sending this request:\n\n"
        + _request(public_url, "/v1/auth/email/verify", {"token": token})
        + f"The token alone:\n\n{token}\n\n"
        "It expires in 48 hours. If you did not create an account, do not confirm it: "
        "ignore this message.",
    )


def password_reset(public_url: str, to: str, token: str) -> OutgoingEmail:
    return OutgoingEmail(
        to=to,
        subject="Reset your password",
        text="Set a new password by sending this request, with your new password in it:\n\n"
        + _reset_request(public_url, token)
        + f"The token alone:\n\n{token}\n\n"
        "It works once and expires in 30 minutes. If you did not ask for it, "
        "ignore this message.",
    )


def register_notice(public_url: str, to: str, claim: str | None) -> OutgoingEmail:
    """To the owner of a taken address; ``claim``, a reset token, when the account there was
    never confirmed (setting its password takes it)."""
    subject = "Someone tried to register with your email"
    if claim is None:
        return OutgoingEmail(
            to=to,
            subject=subject,
            text="Somebody (maybe you) tried to create an account with this address, which "
            "already has one. If that was you, sign in or reset your password at "
            f"{public_url}/docs. Otherwise you can ignore this message.",
        )
    return OutgoingEmail(
        to=to,
        subject=subject,
        text="Somebody (maybe you) tried to create an account with this address. It already "
        "has one, made earlier and never confirmed, so nobody can sign in to it; an earlier "
        "confirmation link for it no longer works. To make it yours, set its password by "
        "sending this request, with your new password in it:\n\n"
        + _reset_request(public_url, claim)
        + f"The token alone:\n\n{claim}\n\n"
        "That confirms the address too. It works once and expires in 30 minutes. If you "
        "did not try to register, ignore this message.",
    )


def _reset_request(public_url: str, token: str) -> str:
    # The password is the reader's to fill in: a placeholder, shown as such.
    body = {"token": token, "password": "<your new password>"}
    return _request(public_url, "/v1/auth/password/reset", body)


def _request(public_url: str, path: str, body: dict[str, str]) -> str:
    # The standard library's json, for its spaces after separators: easier to read.
    return f"POST {public_url}{path}\nContent-Type: application/json\n\n{json.dumps(body)}\n\n"
