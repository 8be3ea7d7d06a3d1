"""Configuration: one frozen object read from the environment.

``DATABASE_URL`` and ``REDIS_URL`` keep their standard names; everything else is ``HOTPATH_*``.
Every bad value is reported at once, and secrets never appear in a repr.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from server.runtime.env_reader import EnvReader
from server.runtime.files import write_new
from server.runtime.mail import parse_smtp_url
from server.runtime.redis_client import is_cluster_url, parse_cluster_url

Environment = Literal["development", "test", "production"]

DEV_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/hotpath"
DEV_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))
        self.problems = problems


def default_hash_concurrency() -> int:
    """One argon2 hash already keeps about 1.5 cores busy (its lanes run on threads) and holds
    64 MiB while it runs, so more at once than half the cores buys memory, not logins."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


@dataclass(frozen=True, slots=True)
class Settings:
    env: Environment = "development"
    database_url: str = field(default=DEV_DATABASE_URL, repr=False)
    database_url_explicit: bool = False
    redis_url: str | None = field(default=DEV_REDIS_URL, repr=False)
    redis_required: bool = False
    secret_key: str = field(default="", repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = Path(".devdata")
    embedded_db: bool = True
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_acquire_timeout: float = 1.0
    db_command_timeout: float = 5.0
    request_timeout: float = 10.0
    db_connect_timeout: float = 3.0
    db_max_lifetime: float = 3600.0  # 0: never
    db_max_queries: int = 50_000  # 0: no limit
    # "transaction": DATABASE_URL is a transaction pooler (PgBouncer pool_mode=transaction):
    # no statement cache, and migrations go to database_direct_url (docs/operations.md).
    db_pooler: Literal["none", "transaction"] = "none"
    database_direct_url: str | None = field(default=None, repr=False)
    # Streaming replicas for lag-tolerant reads (server/db/replicas.py, docs/scaling.md).
    database_replica_urls: tuple[str, ...] = field(default=(), repr=False)
    replica_max_lag: float = 1.0
    # Signed-in callers' lag-tolerant reads on replicas too, past their own latest write
    # (server/db/write_marks.py): each of their writes then notes its WAL position in Redis.
    replica_signed_in_reads: bool = True
    redis_timeout: float = 0.5
    max_body_bytes: int = 1_048_576
    # A request body: this many seconds, one more per body_min_rate bytes, at most the max.
    body_timeout: float = 10.0
    body_min_rate: int = 1024
    body_max_timeout: float = 60.0
    max_body_readers: int = 1024
    max_body_readers_per_client: int = 64
    access_log: bool = True
    log_level: str = "info"
    hsts: bool = False
    drain_seconds: float = 0.0
    trusted_proxies: tuple[str, ...] = ()
    jwt_algorithm: str = "EdDSA"
    jwt_keys_dir: Path | None = None
    jwt_active_kid: str | None = None
    jwt_issuer: str = "hotpath"
    jwt_audience: str = "hotpath-api"
    access_token_ttl: int = 600
    refresh_grace_seconds: float = 10.0
    session_idle_seconds: int = 14 * 86400
    session_lifetime_seconds: int = 30 * 86400
    password_hash_concurrency: int = field(default_factory=default_hash_concurrency)
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str = "hotpath <no-reply@localhost>"
    public_url: str = "http://127.0.0.1:8000"
    apikey_rotation_grace_seconds: int = 86400
    apikey_cache_seconds: float = 60.0
    product_cache_seconds: float = 30.0
    # Rate limits: (requests, window seconds); per API key, user, or client address.
    rate_limits: bool = True
    rate_read: tuple[int, float] = (1200, 60.0)
    rate_write: tuple[int, float] = (300, 60.0)
    rate_auth: tuple[int, float] = (20, 60.0)
    rate_account_mail: tuple[int, float] = (5, 3600.0)
    rate_high_tier: int = 10
    rate_replicas: int = 1
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False
    auth_cookies: bool = False
    # Placing an order needs a confirmed email address (on outside the test environment, whose
    # accounts are made straight in the database).
    orders_need_verified_email: bool = False
    max_in_flight: int = 512
    compress_from: int = 1024
    # Webhooks (docs/webhooks.md): where they may go, and how the worker sends them.
    webhook_allow_http: bool = False
    webhook_allow_networks: tuple[str, ...] = ()
    webhook_timeout: float = 10.0
    webhook_endpoint_concurrency: int = 4
    webhook_endpoint_rate: float = 50.0  # sends a second, per endpoint and worker
    webhook_retry_base_seconds: float = 5.0
    webhook_retry_horizon_seconds: float = 86400.0
    webhook_disable_after_seconds: float = 3 * 86400.0
    webhook_rotation_grace_seconds: float = 86400.0
    webhook_poll_seconds: float = 0.5
    outbox_retention_seconds: float = 7 * 86400.0  # 0: kept forever
    worker_metrics_port: int = 0  # 0: the worker serves no metrics
    # Tracing (docs/observability.md): the OTLP/HTTP receiver's base URL; None: tracing off.
    # Kept out of the repr, as a URL may carry credentials.
    otel_endpoint: str | None = field(default=None, repr=False)

    @property
    def keys_dir(self) -> Path:
        """Where the token signing keys live (generated under data_dir in development)."""
        return self.jwt_keys_dir or self.data_dir / "jwt"

    @property
    def migration_url(self) -> str:
        """Where migrations run: they hold a session-level lock, which a transaction pooler
        would hand to whichever server connection it picked (docs/operations.md)."""
        return self.database_direct_url or self.database_url

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read every variable; raise one SettingsError listing every problem."""
        reader = EnvReader(environ)
        env = reader.choice("HOTPATH_ENV", ("development", "test", "production"), "development")
        production = env == "production"
        test = env == "test"
        database_url = reader.text("DATABASE_URL", "")
        redis_url = reader.raw("REDIS_URL")
        direct_url = reader.text("HOTPATH_DATABASE_DIRECT_URL", "")
        replica_urls = tuple(
            url.strip()
            for url in reader.text("DATABASE_REPLICA_URLS", "").split(",")
            if url.strip()
        )
        if any(not url.startswith(("postgresql://", "postgres://")) for url in replica_urls):
            reader.problems.append(
                "DATABASE_REPLICA_URLS must be postgresql:// URLs, comma-separated"
            )
        secret_key = reader.text("HOTPATH_SECRET_KEY", "")
        if database_url and not database_url.startswith(("postgresql://", "postgres://")):
            reader.problems.append("DATABASE_URL must be a postgresql:// URL")
        if direct_url and not direct_url.startswith(("postgresql://", "postgres://")):
            reader.problems.append("HOTPATH_DATABASE_DIRECT_URL must be a postgresql:// URL")
        if redis_url and not redis_url.startswith(REDIS_SCHEMES):
            reader.problems.append(
                "REDIS_URL must be a redis://, rediss://, unix://, redis+cluster:// or"
                " rediss+cluster:// URL"
            )
        elif redis_url and is_cluster_url(redis_url):
            try:
                parse_cluster_url(redis_url)
            except ValueError as error:  # its text never holds the URL, which may hold a password
                reader.problems.append(f"REDIS_URL: {error}")
        if secret_key and len(secret_key) < _MIN_SECRET_LENGTH:
            reader.problems.append(
                f"HOTPATH_SECRET_KEY must be at least {_MIN_SECRET_LENGTH} characters"
            )
        if production:
            if not database_url:
                reader.problems.append("DATABASE_URL is required when HOTPATH_ENV=production")
            if not secret_key:
                reader.problems.append("HOTPATH_SECRET_KEY is required when HOTPATH_ENV=production")
        keys_dir = reader.text("HOTPATH_JWT_KEYS_DIR", "")
        if production and not keys_dir:
            reader.problems.append("HOTPATH_JWT_KEYS_DIR is required when HOTPATH_ENV=production")
        smtp_url = reader.text("HOTPATH_SMTP_URL", "") or None
        if smtp_url:
            try:
                parse_smtp_url(smtp_url)
            except ValueError as error:  # its text never holds the URL, which holds a password
                reader.problems.append(f"HOTPATH_SMTP_URL: {error}")
        metrics_token = reader.text("HOTPATH_METRICS_TOKEN", "") or None
        if metrics_token is not None and len(metrics_token) < 16:
            reader.problems.append("HOTPATH_METRICS_TOKEN must be at least 16 characters")
        port = reader.integer("HOTPATH_PORT", 8000, 1, 65535)
        # hotpath's own name first, then OpenTelemetry's standard one.
        otel_endpoint = (
            reader.text("HOTPATH_OTEL_ENDPOINT", "")
            or reader.text("OTEL_EXPORTER_OTLP_ENDPOINT", "")
            or None
        )
        if otel_endpoint and not otel_endpoint.startswith(("http://", "https://")):
            reader.problems.append(
                "HOTPATH_OTEL_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT) must be an http:// or "
                "https:// URL: an OTLP/HTTP receiver, such as a collector on port 4318"
            )
        settings = cls(
            env=env,
            database_url=database_url or DEV_DATABASE_URL,
            database_url_explicit=bool(database_url),
            # Unset: the local default in development, none in production. Set but empty: none.
            redis_url=(redis_url or None)
            if redis_url is not None
            else (None if production else DEV_REDIS_URL),
            redis_required=bool(redis_url),
            secret_key=secret_key,
            metrics_token=metrics_token,
            host=reader.host("HOTPATH_HOST", "127.0.0.1"),
            port=port,
            workers=reader.integer("HOTPATH_WORKERS", 1, 1, 256),
            data_dir=Path(reader.text("HOTPATH_DATA_DIR", ".devdata")),
            embedded_db=reader.boolean("HOTPATH_EMBEDDED_DB", not production),
            db_pool_min=reader.integer("HOTPATH_DB_POOL_MIN", 2, 0, 1000),
            db_pool_max=reader.integer("HOTPATH_DB_POOL_MAX", 10, 1, 1000),
            db_acquire_timeout=reader.number("HOTPATH_DB_ACQUIRE_TIMEOUT", 1.0, 0.01, 60),
            db_command_timeout=reader.number("HOTPATH_DB_COMMAND_TIMEOUT", 5.0, 0.01, 3600),
            request_timeout=reader.number("HOTPATH_REQUEST_TIMEOUT", 10.0, 0.01, 3600),
            db_connect_timeout=reader.number("HOTPATH_DB_CONNECT_TIMEOUT", 3.0, 0.1, 60),
            db_max_lifetime=reader.number("HOTPATH_DB_MAX_LIFETIME", 3600.0, 0, 7 * 86400),
            db_max_queries=reader.integer("HOTPATH_DB_MAX_QUERIES", 50_000, 0, 1_000_000_000),
            db_pooler=reader.choice("HOTPATH_DB_POOLER", ("none", "transaction"), "none"),
            database_direct_url=direct_url or None,
            database_replica_urls=replica_urls,
            # At most a minute: well inside the product cache's tombstones' 300 s in Redis,
            # which is what lets a cache miss trust a replica (server/catalog/cache.py).
            replica_max_lag=reader.number("HOTPATH_REPLICA_MAX_LAG", 1.0, 0.05, 60),
            replica_signed_in_reads=reader.boolean("HOTPATH_REPLICA_SIGNED_IN_READS", True),
            redis_timeout=reader.number("HOTPATH_REDIS_TIMEOUT", 0.5, 0.01, 30),
            max_body_bytes=reader.integer("HOTPATH_MAX_BODY_BYTES", 1_048_576, 1, 1 << 30),
            body_timeout=reader.number("HOTPATH_BODY_TIMEOUT", 10.0, 0.01, 3600),
            body_min_rate=reader.integer("HOTPATH_BODY_MIN_RATE", 1024, 0, 1 << 30),
            body_max_timeout=reader.number("HOTPATH_BODY_MAX_TIMEOUT", 60.0, 0.01, 3600),
            max_body_readers=reader.integer("HOTPATH_MAX_BODY_READERS", 1024, 1, 1_000_000),
            max_body_readers_per_client=reader.integer(
                "HOTPATH_MAX_BODY_READERS_PER_CLIENT", 64, 1, 1_000_000
            ),
            access_log=reader.boolean("HOTPATH_ACCESS_LOG", True),
            log_level=reader.choice(
                "HOTPATH_LOG_LEVEL", ("debug", "info", "warning", "error"), "info"
            ),
            hsts=reader.boolean("HOTPATH_HSTS", production),
            drain_seconds=reader.number(
                "HOTPATH_DRAIN_SECONDS", 5.0 if production else 0.0, 0, 300
            ),
            trusted_proxies=reader.networks("HOTPATH_TRUSTED_PROXIES"),
            jwt_algorithm=reader.choice("HOTPATH_JWT_ALGORITHM", ("eddsa", "hs256"), "eddsa")
            .replace("eddsa", "EdDSA")
            .replace("hs256", "HS256"),
            jwt_keys_dir=Path(keys_dir) if keys_dir else None,
            jwt_active_kid=reader.text("HOTPATH_JWT_ACTIVE_KID", "") or None,
            jwt_issuer=reader.text("HOTPATH_JWT_ISSUER", "hotpath"),
            jwt_audience=reader.text("HOTPATH_JWT_AUDIENCE", "hotpath-api"),
            access_token_ttl=reader.integer("HOTPATH_ACCESS_TOKEN_TTL", 600, 60, 900),
            refresh_grace_seconds=reader.number("HOTPATH_REFRESH_GRACE_SECONDS", 10.0, 0, 60),
            session_idle_seconds=reader.integer(
                "HOTPATH_SESSION_IDLE_SECONDS", 14 * 86400, 300, 365 * 86400
            ),
            session_lifetime_seconds=reader.integer(
                "HOTPATH_SESSION_LIFETIME_SECONDS", 30 * 86400, 300, 365 * 86400
            ),
            password_hash_concurrency=reader.integer(
                "HOTPATH_PASSWORD_HASH_CONCURRENCY", default_hash_concurrency(), 1, 64
            ),
            # argon2-cffi's defaults (RFC 9106 low-memory) are the floor outside tests.
            argon2_time_cost=reader.integer("HOTPATH_ARGON2_TIME_COST", 3, 1 if test else 3, 20),
            argon2_memory_kib=reader.integer(
                "HOTPATH_ARGON2_MEMORY_KIB", 65536, 1024 if test else 65536, 4 * 1048576
            ),
            smtp_url=smtp_url,
            mail_from=reader.mailbox("HOTPATH_MAIL_FROM", "hotpath <no-reply@localhost>"),
            # Unset: where this server listens on this machine, so mails follow HOTPATH_PORT.
            public_url=reader.public_url("HOTPATH_PUBLIC_URL", f"http://127.0.0.1:{port}"),
            apikey_rotation_grace_seconds=reader.integer(
                "HOTPATH_APIKEY_ROTATION_GRACE_SECONDS", 86400, 0, 30 * 86400
            ),
            apikey_cache_seconds=reader.number("HOTPATH_APIKEY_CACHE_SECONDS", 60.0, 1, 600),
            product_cache_seconds=reader.number("HOTPATH_PRODUCT_CACHE_SECONDS", 30.0, 0, 3600),
            rate_limits=reader.boolean("HOTPATH_RATE_LIMITS", True),
            rate_read=reader.rate("HOTPATH_RATE_LIMIT_READ", (1200, 60.0)),
            rate_write=reader.rate("HOTPATH_RATE_LIMIT_WRITE", (300, 60.0)),
            rate_auth=reader.rate("HOTPATH_RATE_LIMIT_AUTH", (20, 60.0)),
            rate_account_mail=reader.rate("HOTPATH_RATE_LIMIT_ACCOUNT_MAIL", (5, 3600.0)),
            rate_high_tier=reader.integer("HOTPATH_RATE_LIMIT_HIGH_TIER", 10, 1, 1000),
            rate_replicas=reader.integer("HOTPATH_RATE_LIMIT_REPLICAS", 1, 1, 1000),
            cors_origins=reader.origins("HOTPATH_CORS_ORIGINS"),
            cors_credentials=reader.boolean("HOTPATH_CORS_CREDENTIALS", False),
            auth_cookies=reader.boolean("HOTPATH_AUTH_COOKIES", False),
            orders_need_verified_email=reader.boolean(
                "HOTPATH_ORDERS_NEED_VERIFIED_EMAIL", env != "test"
            ),
            max_in_flight=reader.integer("HOTPATH_MAX_IN_FLIGHT", 512, 0, 1_000_000),
            compress_from=reader.integer("HOTPATH_COMPRESS_FROM_BYTES", 1024, 0, 1 << 30),
            webhook_allow_http=reader.boolean("HOTPATH_WEBHOOK_ALLOW_HTTP", False),
            webhook_allow_networks=reader.networks("HOTPATH_WEBHOOK_ALLOW_NETWORKS"),
            webhook_timeout=reader.number("HOTPATH_WEBHOOK_TIMEOUT", 10.0, 0.1, 60),
            webhook_endpoint_concurrency=reader.integer(
                "HOTPATH_WEBHOOK_ENDPOINT_CONCURRENCY", 4, 1, 100
            ),
            webhook_endpoint_rate=reader.number("HOTPATH_WEBHOOK_ENDPOINT_RATE", 50.0, 0.01, 10000),
            webhook_retry_base_seconds=reader.number(
                "HOTPATH_WEBHOOK_RETRY_BASE_SECONDS", 5.0, 0.01, 3600
            ),
            webhook_retry_horizon_seconds=reader.number(
                "HOTPATH_WEBHOOK_RETRY_HORIZON_SECONDS", 86400.0, 1, 30 * 86400
            ),
            webhook_disable_after_seconds=reader.number(
                "HOTPATH_WEBHOOK_DISABLE_AFTER_SECONDS", 3 * 86400.0, 0, 365 * 86400
            ),
            webhook_rotation_grace_seconds=reader.number(
                "HOTPATH_WEBHOOK_ROTATION_GRACE_SECONDS", 86400.0, 0, 30 * 86400
            ),
            webhook_poll_seconds=reader.number("HOTPATH_WEBHOOK_POLL_SECONDS", 0.5, 0.01, 60),
            outbox_retention_seconds=reader.number(
                "HOTPATH_OUTBOX_RETENTION_SECONDS", 7 * 86400.0, 0, 3650 * 86400
            ),
            worker_metrics_port=reader.integer("HOTPATH_WORKER_METRICS_PORT", 0, 0, 65535),
            otel_endpoint=otel_endpoint,
        )
        if production and settings.webhook_allow_http:
            reader.problems.append("HOTPATH_WEBHOOK_ALLOW_HTTP must be off in production")
        if settings.body_max_timeout < settings.body_timeout:
            reader.problems.append(
                "HOTPATH_BODY_MAX_TIMEOUT must not be below HOTPATH_BODY_TIMEOUT"
            )
        if settings.db_pool_min > settings.db_pool_max:
            reader.problems.append("HOTPATH_DB_POOL_MIN must not exceed HOTPATH_DB_POOL_MAX")
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings

    def with_dev_secrets(self) -> Settings:
        """Outside production, fill a missing secret key from ``data_dir`` (made once)."""
        if self.secret_key or self.production:
            return self
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # made by a process starting beside us
                write_new(path, secrets.token_urlsafe(48).encode())
        return replace(self, secret_key=path.read_text().strip())

    def with_database_url(self, url: str) -> Settings:
        return replace(self, database_url=url)

    def with_pool_size(self, low: int, high: int) -> Settings:
        return replace(self, db_pool_min=low, db_pool_max=high)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    return Settings.from_env(os.environ if environ is None else environ).with_dev_secrets()
