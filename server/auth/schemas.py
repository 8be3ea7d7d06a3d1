"""Request and response shapes of the auth endpoints (msgspec: strict, no unknown fields)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from server.auth.password_policy import MAX_LENGTH, MIN_LENGTH
from server.web.apidoc import DOCUMENTED
from server.web.schemas import DisplayName, Password, Strict

# The rule is server/users/email_address.py's; an address it refuses is a 422 at /email.
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Normalised before use, and the normalised address is the account's: it "
        "is unique, looked up and mailed to. Unicode NFKC over the whole address; the part "
        "before @ must then be ASCII letters, digits, dots or !#$%&'*+-/=?^_`{|}~; the whole "
        "address is case-folded, and the domain is converted to its IDNA 2003 ASCII form "
        "(bücher.de is xn--bcher-kva.de). So a Kelvin sign K or full-width letters are the "
        "plain letters, and an address that cannot be normalised is a 422 at /email.",
    ),
]
# A password being set: decoded as loosely as Password, so that the policy judges it and names
# every problem at once (its length counted after NFKC, as it is hashed); the document shows
# the policy's bounds, which are what a client has to meet.
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=1024,
        extra_json_schema={
            "description": f"{MIN_LENGTH} to {MAX_LENGTH} characters (after NFKC "
            "normalisation); not a common or predictable password, nor one containing the "
            "account's email address.",
            DOCUMENTED: {"minLength": MIN_LENGTH, "maxLength": MAX_LENGTH},
        },
    ),
]
Token = Annotated[str, msgspec.Meta(min_length=16, max_length=512)]


class RegisterBody(Strict):
    email: Email
    password: NewPassword
    display_name: DisplayName = ""


class LoginBody(Strict):
    email: Email
    password: Password
    # Browser apps: the refresh token goes in an HttpOnly cookie, not the body (cookie mode).
    cookie: bool = False
    # The device_token of an earlier login from this client (see TokenResponse).
    device_token: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class RefreshBody(Strict):
    # None: the session cookie carries it (cookie mode).
    refresh_token: Token | None = None


class EmailBody(Strict):
    email: Email


class TokenBody(Strict):
    token: Token


class ResetBody(Strict):
    token: Token
    password: NewPassword


class ChangePasswordBody(Strict):
    current_password: Password
    new_password: NewPassword


class TokenResponse(msgspec.Struct, omit_defaults=True):
    access_token: str
    token_type: str
    expires_in: int
    # In the body for bearer clients; in cookie mode the cookie holds it and csrf_token is here.
    refresh_token: str | None = None
    csrf_token: str | None = None
    # Logins only: send it with this client's next login, and failed logins by others (which
    # block the account for a while) do not hold this client up. In cookie mode it is a cookie.
    device_token: str | None = None


class Accepted(msgspec.Struct):
    status: str
    detail: str


class SessionView(msgspec.Struct):
    id: str
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime
    user_agent: str
    ip: str
    current: bool


class SessionList(msgspec.Struct):
    data: list[SessionView]


class Jwk(msgspec.Struct, omit_defaults=True):
    kty: str
    kid: str
    alg: str = ""
    use: str = ""
    crv: str = ""
    x: str = ""


class Jwks(msgspec.Struct):
    keys: list[Jwk]
