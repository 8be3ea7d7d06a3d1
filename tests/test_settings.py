from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.settings import DEV_DATABASE_URL, DEV_REDIS_URL, Settings, SettingsError, load_settings

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
