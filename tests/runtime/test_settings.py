from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.runtime.settings import (
    DEV_DATABASE_URL,
    DEV_REDIS_URL,
    Settings,
    SettingsError,
    load_settings,
)
from tests.fixtures.support import at_once_in_processes

SECRET = "s3cr3t-" + "k" * 40


def test_defaults_in_development() -> None:
    settings = Settings.from_env({})
    assert settings.env == "development"
    assert settings.database_url == DEV_DATABASE_URL
    assert settings.redis_url == DEV_REDIS_URL
    assert not settings.redis_required
    assert settings.port == 8000
    assert settings.embedded_db


def test_every_invalid_value_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "HOTPATH_PORT": "eighty",
                "HOTPATH_WORKERS": "0",
                "HOTPATH_ACCESS_LOG": "maybe",
                "HOTPATH_ENV": "staging",
                "DATABASE_URL": "mysql://x",
                "HOTPATH_SECRET_KEY": "short",
                "HOTPATH_TRUSTED_PROXIES": "10.0.0.0/8,not-a-net",
            }
        )
    problems = "\n".join(caught.value.problems)
    for name in (
        "HOTPATH_PORT",
        "HOTPATH_WORKERS",
        "HOTPATH_ACCESS_LOG",
        "HOTPATH_ENV",
        "DATABASE_URL",
        "HOTPATH_SECRET_KEY",
        "HOTPATH_TRUSTED_PROXIES",
    ):
        assert name in problems
    assert len(caught.value.problems) == 7


def test_production_refuses_to_start_without_explicit_secrets() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"HOTPATH_ENV": "production"})
    assert any("HOTPATH_SECRET_KEY" in p for p in caught.value.problems)
    assert any("DATABASE_URL" in p for p in caught.value.problems)
    assert any("HOTPATH_JWT_KEYS_DIR" in p for p in caught.value.problems)


def test_production_with_secrets_is_hardened() -> None:
    settings = Settings.from_env(
        {
            "HOTPATH_ENV": "production",
            "DATABASE_URL": "postgresql://app:pw@db/hotpath",
            "HOTPATH_SECRET_KEY": SECRET,
            "HOTPATH_JWT_KEYS_DIR": "/run/secrets/jwt",
        }
    )
    assert settings.production
    assert settings.hsts
    assert settings.redis_url is None
    assert not settings.embedded_db
    assert settings.drain_seconds > 0


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:dbpassword@db/hotpath",
            "REDIS_URL": "redis://:redispassword@cache:6379/0",
            "HOTPATH_SECRET_KEY": SECRET,
            "HOTPATH_METRICS_TOKEN": "metrics-token-123456",
        }
    )
    text = repr(settings) + str(settings)
    for secret in (SECRET, "dbpassword", "redispassword", "metrics-token-123456"):
        assert secret not in text


def test_redis_url_set_but_empty_means_single_node() -> None:
    assert Settings.from_env({"REDIS_URL": ""}).redis_url is None
    explicit = Settings.from_env({"REDIS_URL": "redis://cache:6379/1"})
    assert explicit.redis_url == "redis://cache:6379/1"
    assert explicit.redis_required


def test_pool_bounds_are_checked_together() -> None:
    with pytest.raises(SettingsError, match="POOL_MIN"):
        Settings.from_env({"HOTPATH_DB_POOL_MIN": "20", "HOTPATH_DB_POOL_MAX": "5"})


def test_development_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    env = {"HOTPATH_DATA_DIR": str(tmp_path / "dev")}
    first = load_settings(env)
    second = load_settings(env)
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    key_file = tmp_path / "dev" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_production_never_generates_a_secret(tmp_path: Path) -> None:
    env = {"HOTPATH_ENV": "production", "HOTPATH_DATA_DIR": str(tmp_path)}
    with pytest.raises(SettingsError):
        load_settings(env)
    assert not (tmp_path / "secret_key").exists()


def test_edge_settings_parse_and_report_bad_values() -> None:
    settings = Settings.from_env(
        {
            "HOTPATH_CORS_ORIGINS": "https://App.example.com:443/, http://localhost:5173",
            "HOTPATH_RATE_LIMIT_READ": "50/10",
            "HOTPATH_MAX_IN_FLIGHT": "0",
            "HOTPATH_REQUEST_TIMEOUT": "2.5",
        }
    )
    assert settings.request_timeout == 2.5
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:5173")
    assert settings.rate_read == (50, 10.0)
    assert settings.max_in_flight == 0
    defaults = Settings.from_env({})
    assert defaults.rate_limits
    assert defaults.max_in_flight > 0
    assert defaults.cors_origins == ()
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "HOTPATH_CORS_ORIGINS": "*",
                "HOTPATH_RATE_LIMIT_WRITE": "ten/60",
                "HOTPATH_RATE_LIMIT_AUTH": "0/60",
                "HOTPATH_REQUEST_TIMEOUT": "0",
            }
        )
    text = str(caught.value)
    for name in (
        "HOTPATH_CORS_ORIGINS",
        "HOTPATH_RATE_LIMIT_WRITE",
        "HOTPATH_RATE_LIMIT_AUTH",
        "HOTPATH_REQUEST_TIMEOUT",
    ):
        assert name in text


# One round catches the old check-then-create race about half the time; ten nearly always.
@pytest.mark.parametrize("round_", range(10))
def test_processes_starting_at_once_share_one_development_secret(
    tmp_path: Path, round_: int
) -> None:
    data_dir = tmp_path / "dev"
    environ = {"HOTPATH_DATA_DIR": str(data_dir)}
    secrets = set(at_once_in_processes(lambda: load_settings(environ).secret_key))
    assert len(secrets) == 1
    assert len(str(secrets.pop())) >= 32
    assert [path.name for path in data_dir.iterdir()] == ["secret_key"]


def test_host_public_url_and_mail_from_are_read() -> None:
    settings = Settings.from_env(
        {
            "HOTPATH_HOST": "10.1.2.3",
            "HOTPATH_PUBLIC_URL": "https://api.example.com/",
            "HOTPATH_MAIL_FROM": '"Shop, Inc." <no-reply@shop.example.com>',
            "HOTPATH_SMTP_URL": "smtps://mailer:pw@smtp.example.com?timeout=5",
        }
    )
    assert settings.host == "10.1.2.3"
    assert settings.public_url == "https://api.example.com"
    assert settings.mail_from == '"Shop, Inc." <no-reply@shop.example.com>'
    assert settings.smtp_url == "smtps://mailer:pw@smtp.example.com?timeout=5"
    for host in ("::", "::1", "localhost", "api-1.internal.example.com"):
        assert Settings.from_env({"HOTPATH_HOST": host}).host == host
    ipv6 = Settings.from_env({"HOTPATH_PUBLIC_URL": "http://[::1]:8000/shop"})
    assert ipv6.public_url == "http://[::1]:8000/shop"
    assert Settings.from_env({"HOTPATH_MAIL_FROM": "ops@localhost"}).mail_from == "ops@localhost"


def test_the_default_public_url_follows_the_port() -> None:
    # Mails link to HOTPATH_PUBLIC_URL: with only the port changed they must still reach us.
    assert Settings.from_env({}).public_url == "http://127.0.0.1:8000"
    assert Settings.from_env({"HOTPATH_PORT": "9123"}).public_url == "http://127.0.0.1:9123"
    explicit = {"HOTPATH_PORT": "9123", "HOTPATH_PUBLIC_URL": "https://api.example.com"}
    assert Settings.from_env(explicit).public_url == "https://api.example.com"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOTPATH_HOST", "two words"),
        ("HOTPATH_HOST", "-leading-hyphen.example.com"),
        ("HOTPATH_HOST", "http://example.com"),
        ("HOTPATH_HOST", "a" * 64 + ".example.com"),
        ("HOTPATH_PUBLIC_URL", "api.example.com"),
        ("HOTPATH_PUBLIC_URL", "ftp://api.example.com"),
        ("HOTPATH_PUBLIC_URL", "https://"),
        ("HOTPATH_PUBLIC_URL", "https://api.example.com:99999"),
        ("HOTPATH_PUBLIC_URL", "https://api.example.com/?next=1"),
        ("HOTPATH_PUBLIC_URL", "https://api.example.com/#top"),
        ("HOTPATH_MAIL_FROM", "nobody"),
        ("HOTPATH_MAIL_FROM", "a@example.com, b@example.com"),
        ("HOTPATH_MAIL_FROM", "Ops <ops@>"),
        ("HOTPATH_MAIL_FROM", "ops@example.com\r\nBcc: victim@example.com"),
        ("HOTPATH_SMTP_URL", "http://smtp.example.com"),
        ("HOTPATH_SMTP_URL", "smtp://smtp.example.com:0"),
        ("HOTPATH_SMTP_URL", "smtp://smtp.example.com:70000"),
        ("HOTPATH_SMTP_URL", "smtp://smtp.example.com?timeout=soon"),
        ("HOTPATH_SMTP_URL", "smtp://smtp.example.com?timeout=301"),
        ("HOTPATH_SMTP_URL", "smtp://smtp.example.com?starttls=maybe"),
    ],
)
def test_bad_addresses_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    (problem,) = caught.value.problems
    assert problem.startswith(name)


def test_address_problems_are_reported_with_the_others_and_never_echo_passwords() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "HOTPATH_HOST": "not a host",
                "HOTPATH_PUBLIC_URL": "https://user:pubpass@api.example.com",
                "HOTPATH_MAIL_FROM": "no address here",
                "HOTPATH_SMTP_URL": "smtp://mailer:smtppass@smtp.example.com?starttls=false",
                "HOTPATH_PORT": "0",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 5
    for name in (
        "HOTPATH_HOST",
        "HOTPATH_PUBLIC_URL",
        "HOTPATH_MAIL_FROM",
        "HOTPATH_SMTP_URL",
        "HOTPATH_PORT",
    ):
        assert any(problem.startswith(name) for problem in problems), name
    assert any("credentials need TLS" in problem for problem in problems)
    assert "smtppass" not in str(caught.value)
    assert "pubpass" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "needed"), [("production", True), ("development", True), ("test", False)]
)
def test_orders_need_a_verified_email_except_in_the_test_environment(
    env: str, needed: bool
) -> None:
    base = {
        "HOTPATH_ENV": env,
        "DATABASE_URL": "postgresql://app:pw@db/hotpath",
        "HOTPATH_SECRET_KEY": SECRET,
        "HOTPATH_JWT_KEYS_DIR": "/run/secrets/jwt",
    }
    assert Settings.from_env(base).orders_need_verified_email is needed
    flipped = {**base, "HOTPATH_ORDERS_NEED_VERIFIED_EMAIL": str(not needed).lower()}
    assert Settings.from_env(flipped).orders_need_verified_email is not needed
    with pytest.raises(SettingsError):
        Settings.from_env({**base, "HOTPATH_ORDERS_NEED_VERIFIED_EMAIL": "sometimes"})


def test_tracing_is_off_unless_an_otlp_endpoint_is_named() -> None:
    assert Settings.from_env({}).otel_endpoint is None
    assert Settings.from_env({"HOTPATH_OTEL_ENDPOINT": ""}).otel_endpoint is None  # compose's
    standard = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert Settings.from_env(standard).otel_endpoint == "http://collector:4318"
    ours = {**standard, "HOTPATH_OTEL_ENDPOINT": "https://traces.example:4318"}
    assert Settings.from_env(ours).otel_endpoint == "https://traces.example:4318"  # ours first
    with pytest.raises(SettingsError, match="HOTPATH_OTEL_ENDPOINT"):
        Settings.from_env({"HOTPATH_OTEL_ENDPOINT": "collector:4317"})
    secret = Settings.from_env({"HOTPATH_OTEL_ENDPOINT": "https://u:s3cr3t@otlp.example"})
    assert "s3cr3t" not in repr(secret)
