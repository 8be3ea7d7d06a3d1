"""Cookie mode: the refresh token in a __Host- HttpOnly cookie, refreshes guarded by a double
submit CSRF token and Sec-Fetch-Site, bearer clients unaffected.

The test client talks plain http://testserver, where a cookie jar would hold back Secure
cookies, so the tests read Set-Cookie and send the Cookie header themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from http.cookies import SimpleCookie

import httpx
import pytest

from server.auth.cookies import CSRF_COOKIE, DEVICE_COOKIE, REFRESH_COOKIE
from server.runtime.settings import Settings
from tests.fixtures.identity import Account, Accounts
from tests.fixtures.support import assert_problem

SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, auth_cookies=True)


@dataclass
class BrowserSession:
    access: str
    csrf: str
    refresh_cookie: str
    csrf_cookie: str

    def cookie_header(self) -> dict[str, str]:
        return {
            "cookie": f"{REFRESH_COOKIE}={self.refresh_cookie}; {CSRF_COOKIE}={self.csrf_cookie}"
        }

    def refresh_headers(self, **extra: str) -> dict[str, str]:
        return {**self.cookie_header(), **SAME_ORIGIN, "x-csrf-token": self.csrf, **extra}


def set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    found: dict[str, SimpleCookie] = {}
    for line in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(line)
        (name,) = cookie.keys()
        found[name] = cookie
        assert line.lower().count("domain") == 0, line  # __Host-: the browser refuses a Domain
    return found


def session_from(response: httpx.Response) -> BrowserSession:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert "refresh_token" not in body
    cookies = set_cookies(response)
    return BrowserSession(
        body["access_token"],
        body["csrf_token"],
        cookies[REFRESH_COOKIE][REFRESH_COOKIE].value,
        cookies[CSRF_COOKIE][CSRF_COOKIE].value,
    )


async def cookie_login(http: httpx.AsyncClient, account: Account) -> BrowserSession:
    body = {"email": account.email, "password": account.password, "cookie": True}
    return session_from(await http.post("/v1/auth/login", json=body))


async def test_login_sets_host_only_strict_cookies_and_hides_the_refresh_token(
    http: httpx.AsyncClient, accounts: Accounts, settings: Settings
) -> None:
    account = await accounts.create()
    body = {"email": account.email, "password": account.password, "cookie": True}
    response = await http.post("/v1/auth/login", json=body)
    session = session_from(response)
    cookies = set_cookies(response)
    refresh = cookies[REFRESH_COOKIE][REFRESH_COOKIE]
    csrf = cookies[CSRF_COOKIE][CSRF_COOKIE]
    for morsel in (refresh, csrf):
        assert morsel["secure"] is True
        assert morsel["path"] == "/"
        assert morsel["samesite"].lower() == "strict"
        assert morsel["max-age"] == str(settings.session_lifetime_seconds)
    assert refresh["httponly"] is True
    assert not csrf["httponly"]  # the page reads it to send it back
    # The known-device token is a cookie too, kept past logouts (a stranger's failed logins
    # then do not block this browser), and not in the body.
    device = cookies[DEVICE_COOKIE][DEVICE_COOKIE]
    assert device["httponly"] is True
    assert device["secure"] is True
    assert device.value.startswith("dv1.")
    assert "device_token" not in response.json()
    assert session.csrf == session.csrf_cookie
    assert len(session.csrf) >= 32
    assert session.refresh_cookie not in response.text
    me = await http.get("/v1/users/me", headers={"authorization": f"Bearer {session.access}"})
    assert me.status_code == 200


async def test_a_same_origin_refresh_with_the_csrf_token_rotates_the_cookie(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    session = await cookie_login(http, await accounts.create())
    # An empty body will do: the cookie carries the refresh token.
    rotated = session_from(await http.post("/v1/auth/refresh", headers=session.refresh_headers()))
    assert rotated.refresh_cookie != session.refresh_cookie
    assert rotated.csrf != session.csrf
    assert rotated.access != session.access
    me = await http.get("/v1/users/me", headers={"authorization": f"Bearer {rotated.access}"})
    assert me.status_code == 200
    # A same-site page on another origin (Sec-Fetch-Site: same-site) may refresh too, and an
    # explicit empty JSON body is the same as none.
    again = await http.post(
        "/v1/auth/refresh",
        json={},
        headers=rotated.refresh_headers(**{"sec-fetch-site": "same-site"}),
    )
    assert session_from(again).refresh_cookie != rotated.refresh_cookie


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("cross-site", {"sec-fetch-site": "cross-site"}),
        ("user-typed", {"sec-fetch-site": "none"}),
        ("no fetch metadata", {"sec-fetch-site": None}),
        ("no token", {"x-csrf-token": None}),
        ("wrong token", {"x-csrf-token": "A" * 43}),
        ("token not matching the cookie", {"csrf-cookie": "B" * 43}),
        ("no csrf cookie", {"csrf-cookie": None}),
    ],
)
async def test_a_cookie_refresh_failing_a_csrf_check_is_403_and_consumes_nothing(
    http: httpx.AsyncClient, accounts: Accounts, case: str, change: dict[str, str | None]
) -> None:
    session = await cookie_login(http, await accounts.create())
    csrf_cookie = change.pop("csrf-cookie", session.csrf_cookie)
    cookie = f"{REFRESH_COOKIE}={session.refresh_cookie}"
    if csrf_cookie is not None:
        cookie += f"; {CSRF_COOKIE}={csrf_cookie}"
    headers = {"cookie": cookie, **SAME_ORIGIN, "x-csrf-token": session.csrf}
    for name, value in change.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value

    refused = await http.post("/v1/auth/refresh", headers=headers)

    assert_problem(refused, 403, "csrf-failed", case=case)
    assert "set-cookie" not in refused.headers
    # The refresh token was never used: the proper request still rotates it (no reuse alarm).
    ok = await http.post("/v1/auth/refresh", headers=session.refresh_headers())
    assert session_from(ok).refresh_cookie != session.refresh_cookie


async def test_a_cross_site_form_post_to_any_route_is_refused(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    session = await cookie_login(http, await accounts.create())
    form = {
        **session.cookie_header(),
        "sec-fetch-site": "cross-site",
        "content-type": "application/x-www-form-urlencoded",
    }
    for path in ("/v1/auth/logout", "/v1/auth/refresh", "/v1/orders", "/v1/api-keys"):
        assert_problem(await http.post(path, content=b"a=1", headers=form), 403, "csrf-failed")


async def test_bearer_requests_are_unaffected_and_logout_clears_the_cookies(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    session = await cookie_login(http, await accounts.create())
    bearer = {
        "authorization": f"Bearer {session.access}",
        **session.cookie_header(),  # the browser sends them along, Path=/
        "sec-fetch-site": "cross-site",
    }
    keys = await http.get("/v1/api-keys", headers=bearer)
    assert keys.status_code == 200
    ended = await http.post("/v1/auth/logout", headers=bearer)
    assert ended.status_code == 204
    cleared = set_cookies(ended)
    assert cleared[REFRESH_COOKIE][REFRESH_COOKIE]["max-age"] == "0"
    assert cleared[CSRF_COOKIE][CSRF_COOKIE]["max-age"] == "0"
    assert cleared[REFRESH_COOKIE][REFRESH_COOKIE].value == ""
    # The session is over: its cookie no longer refreshes.
    gone = await http.post("/v1/auth/refresh", headers=session.refresh_headers())
    assert_problem(gone, 401)


async def test_body_tokens_still_work_in_cookie_mode(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    account = await accounts.create()
    tokens = await accounts.login(account)  # no "cookie": the refresh token is in the body
    refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert refreshed.status_code == 200, refreshed.text
    assert "set-cookie" not in refreshed.headers
    assert "csrf_token" not in refreshed.json()
    assert refreshed.json()["refresh_token"] != tokens.refresh


async def test_a_cookie_refresh_without_a_cookie_is_401(http: httpx.AsyncClient) -> None:
    assert_problem(await http.post("/v1/auth/refresh", headers=SAME_ORIGIN), 401)
    bogus = {"cookie": f"{REFRESH_COOKIE}=nope; {CSRF_COOKIE}=t", "x-csrf-token": "t"}
    assert_problem(await http.post("/v1/auth/refresh", headers={**bogus, **SAME_ORIGIN}), 401)


async def test_a_bearer_token_beside_the_cookie_does_not_skip_the_csrf_checks(
    http: httpx.AsyncClient, accounts: Accounts
) -> None:
    """The CSRF layer leaves requests with credentials of their own alone; the refresh must
    then not use the session cookie, or anyone's bearer token would carry a victim's cookie
    past the checks."""
    victim = await cookie_login(http, await accounts.create())
    _, someone = await accounts.create_and_login()
    smuggled = {
        "cookie": f"{REFRESH_COOKIE}={victim.refresh_cookie}",
        "authorization": f"Bearer {someone.access}",
        "sec-fetch-site": "cross-site",
    }
    refused = await http.post("/v1/auth/refresh", headers=smuggled)
    assert_problem(refused, 403, "csrf-failed")
    assert "set-cookie" not in refused.headers
    # The victim's session was not touched: the proper refresh still rotates it.
    ok = await http.post("/v1/auth/refresh", headers=victim.refresh_headers())
    assert session_from(ok).refresh_cookie != victim.refresh_cookie
