"""Which key and budget a request spends: the key comes with the principal now, and must be
what it was when classify formatted it per request."""

from __future__ import annotations

import dataclasses
import secrets

from server.auth.principal import Principal
from server.ratelimit.classes import EXEMPT, RouteClasses, exempt
from server.runtime.settings import Settings

SETTINGS = Settings(
    env="test", database_url="postgresql://127.0.0.1/unused", secret_key=secrets.token_urlsafe(32)
)


def scope(path: str, method: str = "GET", principal: object = None) -> dict[str, object]:
    found: dict[str, object] = {"path": path, "method": method, "client": ("10.1.2.3", 4000)}
    if principal is not None:
        found["principal"] = principal
    return found


def user(**changes: object) -> Principal:
    return Principal(7, "s", ("customer",), frozenset(), 0, **changes)  # type: ignore[arg-type]


def test_each_caller_spends_its_own_key_and_budget() -> None:
    classes = RouteClasses(SETTINGS)
    assert classes(scope("/v1/products/1", principal=user())) == ("user:7", classes.read)
    assert classes(scope("/v1/orders", "POST", user())) == ("user:7", classes.write)
    key = user(api_key_id="k1")
    assert classes(scope("/v1/products/1", principal=key)) == ("key:k1", classes.read)
    high = user(api_key_id="k2", rate_tier="high")
    assert classes(scope("/v1/products/1", principal=high)) == ("key:k2", classes.read_high)
    assert classes(scope("/v1/orders", "POST", high)) == ("key:k2", classes.write_high)
    # The high tier is an API key's: a user marked high (no key) spends the standard budget.
    marked = user(rate_tier="high")
    assert classes(scope("/v1/products/1", principal=marked)) == ("user:7", classes.read)
    assert classes(scope("/v1/products/1")) == ("ip:10.1.2.3", classes.read)
    assert classes(scope("/v1/auth/login", "POST", key)) == ("ip:10.1.2.3", classes.auth)
    for open_path in ("/livez", "/metrics", "/docs", "/docs/oauth2-redirect"):
        assert classes(scope(open_path, principal=key)) is None


def test_classify_exempts_exactly_what_exempt_says() -> None:
    # RouteClasses tests the exempt paths inline (a call fewer a request): the two must agree.
    classes = RouteClasses(SETTINGS)
    paths = [
        *EXEMPT,
        "/docs",
        "/docs/oauth2-redirect",
        "/docsx",
        "/doc",
        "/livez/",
        "/v1/products/1",
    ]
    paths += ["/", "/v1/auth/login", "/openapi.json.gz", "/metrics2", "/.well-known/other"]
    # Around the range RouteClasses tests for the /docs prefix: just below and above it.
    paths += ["/docr", "/docs\x00", "/docs\U0010ffff", "/doct", "/docta", "/dod", "/docS", ""]
    for path in paths:
        assert (classes(scope(path, principal=user())) is None) == exempt(path), path


def test_the_principals_key_follows_a_replace() -> None:
    key = dataclasses.replace(user(), api_key_id="k3")
    assert key.rate_key == "key:k3"
    assert key == user(api_key_id="k3")  # derived: not part of equality
    assert "rate_key" not in repr(key)
