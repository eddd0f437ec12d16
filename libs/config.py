"""Configuration from the environment: frozen dataclasses, validated at start-up, failing fast.

Every variable is read through :class:`EnvReader`, which collects *all* problems and
raises one :class:`ConfigError` naming each bad variable, so an operator fixes them in
one go. The full list of variables is in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Aliases: inside EnvReader the names str/float/bool are its methods.
Text = str
Real = float
Flag = bool


class ConfigError(Exception):
    """Raised at start-up when one or more environment variables are missing or invalid."""


class EnvReader:
    """Reads typed values from an environment mapping and remembers every problem."""

    def __init__(self, environ: Mapping[str, Text] | None = None):
        self.environ = os.environ if environ is None else environ
        self.errors: list[str] = []

    def _raw(self, name: Text) -> Text | None:
        value = self.environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def str(self, name: Text, default: Text | None = None, *, choices: tuple[str, ...] = ()) -> Text:
        value = self._raw(name)
        if value is None:
            if default is None:
                self.errors.append(f"{name} is required")
                return ""
            return default
        if choices and value not in choices:
            self.errors.append(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def int(self, name: Text, default: int, *, min: int | None = None, max: int | None = None) -> int:
        return self._number(name, default, int, min, max)

    def float(self, name: Text, default: Real, *, min: Real | None = None,
              max: Real | None = None) -> Real:
        return self._number(name, default, Real, min, max)

    def bool(self, name: Text, default: Flag) -> Flag:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        self.errors.append(f"{name}={value!r} must be true or false")
        return default

    def floats(self, name: Text, default: tuple[Real, ...]) -> tuple[Real, ...]:
        value = self._raw(name)
        if value is None:
            return default
        try:
            parsed = tuple(float(part) for part in value.split(","))
        except ValueError:
            self.errors.append(f"{name}={value!r} must be a comma-separated list of numbers")
            return default
        if not parsed or any(p < 0 for p in parsed):
            self.errors.append(f"{name}={value!r} must list non-negative numbers")
        return parsed

    def _number(self, name: Text, default: T, kind: type, lo: Real | None, hi: Real | None) -> T:
        value = self._raw(name)
        if value is None:
            return default
        try:
            parsed = kind(value)
        except ValueError:
            self.errors.append(f"{name}={value!r} must be {'an integer' if kind is int else 'a number'}")
            return default
        if (lo is not None and parsed < lo) or (hi is not None and parsed > hi):
            self.errors.append(f"{name}={value!r} must be between {lo} and {hi}")
        return parsed  # type: ignore[no-any-return]

    def check(self) -> None:
        if self.errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(self.errors))


@dataclass(frozen=True)
class MySQLConfig:
    host: str
    port: int
    user: str
    password: str
    database: str
    pool_size: int
    retry_attempts: int = 4  # tries of one transaction whose connection failed
    retry_base_ms: int = 100  # wait before the second try (doubles each time)
    connect_timeout_ms: int = 2000  # TCP connect (the handshake's reads use read_timeout_ms)
    read_timeout_ms: int = 10_000  # longest wait for any answer: a hung server times out
    write_timeout_ms: int = 10_000
    breaker_max_ms: int = 1000  # longest fail-fast spell between trials while MySQL is away

    @classmethod
    def read(cls, env: EnvReader) -> MySQLConfig:
        return cls(
            host=env.str("NJ_MYSQL_HOST", "127.0.0.1"),
            port=env.int("NJ_MYSQL_PORT", 3306, min=1, max=65535),
            user=env.str("NJ_MYSQL_USER", "root"),
            password=env.environ.get("NJ_MYSQL_PASSWORD", ""),
            database=env.str("NJ_MYSQL_DATABASE", "natterjack"),
            pool_size=env.int("NJ_MYSQL_POOL_SIZE", 8, min=1, max=256),
            retry_attempts=env.int("NJ_MYSQL_RETRY_ATTEMPTS", 4, min=1, max=100),
            retry_base_ms=env.int("NJ_MYSQL_RETRY_BASE_MS", 100, min=1, max=60_000),
            connect_timeout_ms=env.int("NJ_MYSQL_CONNECT_TIMEOUT_MS", 2000, min=1, max=3_600_000),
            read_timeout_ms=env.int("NJ_MYSQL_READ_TIMEOUT_MS", 10_000, min=1, max=3_600_000),
            write_timeout_ms=env.int("NJ_MYSQL_WRITE_TIMEOUT_MS", 10_000, min=1, max=3_600_000),
            breaker_max_ms=env.int("NJ_MYSQL_BREAKER_MAX_MS", 1000, min=1, max=3_600_000),
        )


@dataclass(frozen=True)
class CommonConfig:
    """What every service reads: identity, bus, stores, HTTP port, logging, shutdown."""

    service: str
    nats_url: str
    nats_user: str
    nats_password: str
    request_timeout: float
    mysql: MySQLConfig
    redis_url: str
    redis_prefix: str
    redis_timeout_s: float
    http_host: str
    http_port: int
    log_level: str
    log_file: str
    log_max_bytes: int  # NJ_LOG_FILE rotates past this size
    log_backups: int  # rotated files kept
    shutdown_deadline: float
    presence_ttl_s: float
    health_cache_s: float
    health_timeout_s: float

    @classmethod
    def read(cls, env: EnvReader, service: str, default_port: int) -> CommonConfig:
        prefix = env.str("NJ_REDIS_PREFIX", "nj:")
        if not prefix.endswith(":"):
            env.errors.append(f"NJ_REDIS_PREFIX={prefix!r} must end with ':'")
        return cls(
            service=service,
            nats_url=env.str("NJ_NATS_URL", "nats://127.0.0.1:4322"),
            nats_user=env.environ.get("NJ_NATS_USER", ""),
            nats_password=env.environ.get("NJ_NATS_PASSWORD", ""),
            request_timeout=env.float("NJ_REQUEST_TIMEOUT_S", 5.0, min=0.05, max=120),
            mysql=MySQLConfig.read(env),
            redis_url=env.str("NJ_REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=prefix,
            redis_timeout_s=env.float("NJ_REDIS_TIMEOUT_S", 1.0, min=0.01, max=60),
            http_host=env.str("NJ_HTTP_HOST", "127.0.0.1"),
            http_port=env.int(f"NJ_{service.upper().replace('-', '_')}_HTTP_PORT", default_port,
                              min=0, max=65535),
            log_level=env.str("NJ_LOG_LEVEL", "info", choices=("debug", "info", "warning", "error")),
            log_file=env.environ.get("NJ_LOG_FILE", ""),
            log_max_bytes=env.int("NJ_LOG_MAX_BYTES", 50 * 1024 * 1024, min=1024),
            log_backups=env.int("NJ_LOG_BACKUPS", 5, min=1, max=1000),
            shutdown_deadline=env.float("NJ_SHUTDOWN_DEADLINE_S", 10.0, min=0.1, max=600),
            presence_ttl_s=env.float("NJ_PRESENCE_TTL_S", 60.0, min=1, max=3600),
            health_cache_s=env.float("NJ_HEALTH_CACHE_S", 1.0, min=0, max=60),
            health_timeout_s=env.float("NJ_HEALTH_PROBE_TIMEOUT_S", 2.0, min=0.05, max=60),
        )
