"""Lookalike addresses (issue 12, defect 3): an account is its normalised address
(server/users/email_address.py), mail goes to that address, and an account stays unusable
until that mailbox confirms it, so whoever registers a spelling of someone else's address
never gets in with their password."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import httpx

from tests.fixtures.identity import Accounts, Mailbox

ATTACKER_PASSWORD = "Attacker-Chose-This-4471"
VICTIM_PASSWORD = "Victim-Own-Passphrase-8812"


async def register(
    client: httpx.AsyncClient, email: str, password: str = VICTIM_PASSWORD
) -> httpx.Response:
    return await client.post("/v1/auth/register", json={"email": email, "password": password})


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def rows(db: asyncpg.Connection, key: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, email, status FROM users WHERE email_normalized = $1 ORDER BY id", key
    )


async def test_a_kelvin_sign_registered_first_never_logs_into_the_plain_address(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, mailbox: Mailbox, db: asyncpg.Connection
) -> None:
    local = f"kim-{secrets.token_hex(4)}"
    victim = f"{local}@example.com"
    lookalike = f"\u212a{local[1:]}@example.com"  # KELVIN SIGN, then "im-..."
    assert (await register(http, lookalike, ATTACKER_PASSWORD)).status_code == 202

    # Its maker's password logs in under no spelling: the account waits for its mailbox.
    for spelling in (victim, lookalike, victim.upper()):
        refused = await login(other_ip, spelling, ATTACKER_PASSWORD)
        assert refused.status_code == 403, (spelling, refused.text)
        assert "access_token" not in refused.text
    # The account is the plain address's: stored that way, and mailed there.
    [account] = await rows(db, victim)
    assert (account["email"], account["status"]) == (victim, "pending")
    [confirm] = await mailbox.tokens(victim, "Confirm")
    assert await mailbox.messages(lookalike) == []

    # The victim registers the plain address: the same 202, and the mail lets them take it.
    assert (await register(http, victim, VICTIM_PASSWORD)).status_code == 202
    assert len(await rows(db, victim)) == 1
    [claim] = await mailbox.tokens(victim, "Someone tried")
    # The attacker's confirmation link, in the victim's inbox, no longer confirms anything.
    stale = await http.post("/v1/auth/email/verify", json={"token": confirm})
    assert stale.status_code == 400
    taken = await http.post(
        "/v1/auth/password/reset", json={"token": claim, "password": VICTIM_PASSWORD}
    )
    assert taken.status_code == 204, taken.text

    assert (await login(http, victim, VICTIM_PASSWORD)).status_code == 200
    for spelling in (victim, lookalike):
        assert (await login(other_ip, spelling, ATTACKER_PASSWORD)).status_code == 401
    [account] = await rows(db, victim)
    assert account["status"] == "active"


async def test_a_dotted_capital_i_is_not_the_plain_address(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, mailbox: Mailbox, db: asyncpg.Connection
) -> None:
    """Case-folded, U+0130 is i + U+0307: not an ASCII local part, so it is refused (the old
    key, lower() in the database's collation, made it the plain 'i')."""
    local = f"info-{secrets.token_hex(4)}"
    victim = f"{local}@example.com"
    lookalike = f"\u0130{local[1:]}@example.com"
    refused = await register(http, lookalike, ATTACKER_PASSWORD)
    assert refused.status_code == 422, refused.text
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/email"]
    assert await rows(db, victim) == []

    assert (await register(http, victim, VICTIM_PASSWORD)).status_code == 202
    [account] = await rows(db, victim)
    assert account["email"] == victim
    token = await mailbox.token(victim, "Confirm")
    assert (await http.post("/v1/auth/email/verify", json={"token": token})).status_code == 204
    assert (await login(http, victim, VICTIM_PASSWORD)).status_code == 200
    assert (await login(other_ip, victim, ATTACKER_PASSWORD)).status_code == 401
    assert (await login(other_ip, lookalike, ATTACKER_PASSWORD)).status_code == 422


async def test_a_lookalike_and_the_plain_address_registered_at_once_make_one_account(
    http: httpx.AsyncClient, mailbox: Mailbox, db: asyncpg.Connection
) -> None:
    local = f"kate-{secrets.token_hex(4)}"
    plain, lookalike = f"{local}@example.com", f"\u212a{local[1:]}@EXAMPLE.com"
    answers = await asyncio.gather(*(register(http, s) for s in [plain, lookalike] * 4))
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1
    [account] = await rows(db, plain)
    assert account["email"] == plain
    # One confirmation and seven notices, every one to the plain address.
    assert len(await mailbox.messages(plain)) == 8
    assert await mailbox.messages(lookalike) == []


async def test_an_unconfirmed_account_is_taken_with_a_forgotten_password_link(
    http: httpx.AsyncClient, other_ip: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    """The mailbox owner who never registers can take a lookalike's account as well."""
    local = f"kai-{secrets.token_hex(4)}"
    victim = f"{local}@example.com"
    assert (await register(http, f"\u212a{local[1:]}@example.com", ATTACKER_PASSWORD)).is_success
    assert (await http.post("/v1/auth/password/forgot", json={"email": victim})).is_success
    token = await mailbox.token(victim, "Reset")
    reset = await http.post(
        "/v1/auth/password/reset", json={"token": token, "password": VICTIM_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    assert (await login(http, victim, VICTIM_PASSWORD)).status_code == 200
    assert (await login(other_ip, victim, ATTACKER_PASSWORD)).status_code == 401


async def test_every_lookup_takes_any_spelling_of_the_address(
    http: httpx.AsyncClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    account = await accounts.create()
    local, _, domain = account.email.partition("@")
    spelling = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in local.upper())
    spelling += "@" + domain.upper()  # full-width upper-case letters and digits
    assert (await login(http, spelling, account.password)).status_code == 200
    assert (await http.post("/v1/auth/password/forgot", json={"email": spelling})).is_success
    assert await mailbox.tokens(account.email, "Reset")
    assert (await register(http, spelling)).status_code == 202
    notices = await mailbox.messages(account.email)
    assert any("Someone tried" in m["Subject"] for m in notices)


async def test_an_address_without_a_normalised_form_is_a_422_at_email(
    http: httpx.AsyncClient,
) -> None:
    bad = "ann@exa\u200emple.com"  # nameprep prohibits U+200E: no IDNA form
    answers = [
        await register(http, bad),
        await login(http, bad, VICTIM_PASSWORD),
        await http.post("/v1/auth/password/forgot", json={"email": bad}),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["pointer"] for e in answer.json()["errors"]] == ["/email"]
