"""Known devices: a stranger's failed logins block the account for strangers only; a client
that logged in before presents its device token and is counted on its own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from server.app import HotpathApp
from server.auth.device_tokens import DeviceTokens
from server.auth.throttle import ACCOUNT_POLICY, DEVICE_POLICY, account_key
from tests.fixtures.identity import Account, Accounts, Mailbox, unique_ip
from tests.fixtures.support import assert_problem, client_for


@pytest.fixture
async def stranger(app: HotpathApp, http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, client=(unique_ip(), 1)) as client:
        yield client


@pytest.fixture
async def owner_ip(app: HotpathApp, http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, client=(unique_ip(), 1)) as client:
        yield client


async def login(
    client: httpx.AsyncClient, account: Account, password: str, device: str | None = None
) -> httpx.Response:
    body = {"email": account.email, "password": password}
    if device is not None:
        body["device_token"] = device
    return await client.post("/v1/auth/login", json=body)


async def block(client: httpx.AsyncClient, account: Account) -> None:
    for attempt in range(ACCOUNT_POLICY.free_failures + 1):
        assert (await login(client, account, f"Wrong-Password-{attempt}")).status_code == 401
    assert (await login(client, account, account.password)).status_code == 429


async def test_a_known_device_logs_in_while_the_account_is_blocked_for_strangers(
    accounts: Accounts, stranger: httpx.AsyncClient, owner_ip: httpx.AsyncClient
) -> None:
    account = await accounts.create()
    first = await login(owner_ip, account, account.password)
    assert first.status_code == 200, first.text
    device = first.json()["device_token"]
    assert device.startswith("dv1.")

    await block(stranger, account)

    unknown = await login(owner_ip, account, account.password)  # no token: a stranger too
    assert_problem(unknown, 429, "login-throttled")
    known = await login(owner_ip, account, account.password, device)
    assert known.status_code == 200, known.text
    assert known.json()["device_token"] == device  # the same device, the same token
    # The stranger's block stands.
    assert (await login(stranger, account, account.password)).status_code == 429


async def test_a_device_token_works_only_for_its_account_and_unaltered(
    accounts: Accounts, stranger: httpx.AsyncClient, owner_ip: httpx.AsyncClient
) -> None:
    mine, other = await accounts.create(), await accounts.create()
    device = (await login(owner_ip, other, other.password)).json()["device_token"]
    await block(stranger, mine)
    assert (await login(owner_ip, mine, mine.password, device)).status_code == 429
    assert (await login(owner_ip, mine, mine.password)).status_code == 429  # no token at all
    forged = DeviceTokens("not the server's key").issue(account_key(mine.email), "any")
    assert (await login(owner_ip, mine, mine.password, forged)).status_code == 429
    prefix, nonce, mac = device.split(".")
    tampered = f"{prefix}.{nonce[:-1]}{'A' if nonce[-1] != 'A' else 'B'}.{mac}"
    assert (await login(owner_ip, mine, mine.password, tampered)).status_code == 429


async def test_failures_with_a_device_token_block_that_device_not_the_account(
    accounts: Accounts, owner_ip: httpx.AsyncClient, stranger: httpx.AsyncClient
) -> None:
    account = await accounts.create()
    device = (await login(owner_ip, account, account.password)).json()["device_token"]
    for attempt in range(DEVICE_POLICY.free_failures + 1):
        wrong = await login(stranger, account, f"Wrong-{attempt}", device)  # a stolen token
        assert wrong.status_code == 401
    assert (await login(stranger, account, account.password, device)).status_code == 429
    # Other clients of the account are not blocked by it.
    assert (await login(owner_ip, account, account.password)).status_code == 200


async def test_a_password_reset_ends_a_strangers_block(
    http: httpx.AsyncClient,
    accounts: Accounts,
    mailbox: Mailbox,
    stranger: httpx.AsyncClient,
    owner_ip: httpx.AsyncClient,
) -> None:
    account = await accounts.create()
    await block(stranger, account)
    asked = await http.post("/v1/auth/password/forgot", json={"email": account.email})
    assert asked.status_code == 202
    token = await mailbox.token(account.email, "Reset")
    new_password = "a brand new passphrase " + secrets.token_hex(4)
    reset = await http.post(
        "/v1/auth/password/reset", json={"token": token, "password": new_password}
    )
    assert reset.status_code == 204, reset.text
    # The emailed token proved the owner: a new device logs in at once.
    again = await owner_ip.post(
        "/v1/auth/login", json={"email": account.email, "password": new_password}
    )
    assert again.status_code == 200, again.text


async def test_a_password_change_retires_every_device_token(
    http: httpx.AsyncClient,
    accounts: Accounts,
    stranger: httpx.AsyncClient,
    owner_ip: httpx.AsyncClient,
) -> None:
    """A device token is bound to the password as it was: one stolen along with a session is
    worth nothing after the owner changes the password."""
    account = await accounts.create()
    first = await login(owner_ip, account, account.password)
    old_device = first.json()["device_token"]
    session = {"authorization": f"Bearer {first.json()['access_token']}"}
    new_password = "another long passphrase " + secrets.token_hex(4)
    changed = await http.post(
        "/v1/auth/password/change",
        json={"current_password": account.password, "new_password": new_password},
        headers=session,
    )
    assert changed.status_code == 204, changed.text
    renewed = Account(account.id, account.email, new_password)
    new_device = (await login(owner_ip, renewed, new_password)).json()["device_token"]
    assert new_device != old_device
    await block(stranger, renewed)
    assert (await login(owner_ip, renewed, new_password, old_device)).status_code == 429
    assert (await login(owner_ip, renewed, new_password, new_device)).status_code == 200
