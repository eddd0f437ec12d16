"""auth's configuration (every variable also in services/auth/README.md).

Signing key: ``NJ_AUTH_SIGNING_KEY_FILE`` names an unencrypted Ed25519 PKCS8 PEM
(``openssl genpkey -algorithm ed25519``) and ``NJ_AUTH_KEY_ID`` (default ``k1``) its key id.
Without the file auth refuses to start, unless ``NJ_AUTH_DEV_GENERATE_KEY=true``: then it
generates a key in memory at start. That is for development and tests only — every
restart invalidates all access tokens and several auth processes would not share a key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from libs.config import CommonConfig, EnvReader

from .domain import LockoutPolicy
from .keys import KID_RE, KeyFileError, KeySet, build_key_set, generate_key_set
from .keys import load_extra_public_keys as _load_extra
from .keys import load_private_key as _load_private

DAY_S = 86400
T = TypeVar("T")


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_kib: int
    parallelism: int
    max_concurrency: int  # hashes at once: each holds memory_kib of RAM


@dataclass(frozen=True)
class RateLimitParams:
    login_free_attempts: int      # failures per username before lockouts start
    login_ip_free_attempts: int   # failures per client address before lockouts start
    login_window_s: int
    lockout_base_s: float
    lockout_max_s: float
    register_per_ip_per_hour: int  # 0: no limit

    def policy(self, free_attempts: int) -> LockoutPolicy:
        return LockoutPolicy(free_attempts, self.login_window_s * 1000,
                             max(1, round(self.lockout_base_s * 1000)),
                             max(1, round(self.lockout_max_s * 1000)))

    @property
    def username_policy(self) -> LockoutPolicy:
        return self.policy(self.login_free_attempts)

    @property
    def ip_policy(self) -> LockoutPolicy:
        return self.policy(self.login_ip_free_attempts)


@dataclass(frozen=True)
class Config:
    common: CommonConfig
    keys: KeySet
    argon2: Argon2Params
    access_token_ttl_s: int
    refresh_token_ttl_s: int
    verify_cache_ttl_s: int
    purge_interval_s: float
    limits: RateLimitParams


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    common = CommonConfig.read(env, "auth", 8091)
    argon2 = _read_argon2(env)
    access_ttl = env.int("NJ_ACCESS_TOKEN_TTL_S", 900, min=30, max=DAY_S)
    refresh_ttl = env.int("NJ_REFRESH_TOKEN_TTL_S", 30 * DAY_S, min=60, max=365 * DAY_S)
    cache_ttl = env.int("NJ_AUTH_VERIFY_CACHE_TTL_S", 30, min=0, max=3600)
    purge = env.float("NJ_AUTH_PURGE_INTERVAL_S", 3600.0, min=1.0, max=7 * DAY_S)
    keys = _read_keys(env)
    limits = _read_limits(env)
    env.check()
    assert keys is not None  # env.check() raised otherwise
    return Config(common, keys, argon2, access_ttl, refresh_ttl, cache_ttl, purge, limits)


def _read_limits(env: EnvReader) -> RateLimitParams:
    params = RateLimitParams(
        login_free_attempts=env.int("NJ_AUTH_LOGIN_FREE_ATTEMPTS", 5, min=1, max=1000),
        login_ip_free_attempts=env.int("NJ_AUTH_LOGIN_IP_FREE_ATTEMPTS", 20, min=1,
                                       max=100_000_000),
        login_window_s=env.int("NJ_AUTH_LOGIN_WINDOW_S", 300, min=1, max=DAY_S),
        lockout_base_s=env.float("NJ_AUTH_LOCKOUT_BASE_S", 1.0, min=0.001, max=DAY_S),
        lockout_max_s=env.float("NJ_AUTH_LOCKOUT_MAX_S", 900.0, min=0.001, max=DAY_S),
        register_per_ip_per_hour=env.int("NJ_AUTH_REGISTER_PER_IP_PER_HOUR", 20, min=0,
                                         max=100_000_000),
    )
    if params.lockout_max_s < params.lockout_base_s:
        env.errors.append("NJ_AUTH_LOCKOUT_MAX_S must be at least NJ_AUTH_LOCKOUT_BASE_S")
    return params


def _read_argon2(env: EnvReader) -> Argon2Params:
    params = Argon2Params(
        time_cost=env.int("NJ_ARGON2_TIME_COST", 3, min=1, max=100),
        memory_kib=env.int("NJ_ARGON2_MEMORY_KIB", 65536, min=8, max=4 * 1024 * 1024),
        parallelism=env.int("NJ_ARGON2_PARALLELISM", 1, min=1, max=64),
        max_concurrency=env.int("NJ_ARGON2_MAX_CONCURRENCY", os.cpu_count() or 2, min=1, max=1024),
    )
    if params.memory_kib < 8 * params.parallelism:
        env.errors.append("NJ_ARGON2_MEMORY_KIB must be at least 8 x NJ_ARGON2_PARALLELISM")
    return params


def _read_keys(env: EnvReader) -> KeySet | None:
    kid = env.str("NJ_AUTH_KEY_ID", "k1")
    if not KID_RE.fullmatch(kid):
        env.errors.append(f"NJ_AUTH_KEY_ID={kid!r} must be 1 to 64 characters of A-Z a-z 0-9 _ . -")
    extra_file = env.str("NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE", "")
    extra: dict[str, str] | None = {}
    if extra_file:
        extra = _try(env, "NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE", _load_extra, extra_file)
    key_file = env.str("NJ_AUTH_SIGNING_KEY_FILE", "")
    dev_generate = env.bool("NJ_AUTH_DEV_GENERATE_KEY", False)
    if key_file:
        private_pem = _try(env, "NJ_AUTH_SIGNING_KEY_FILE", _load_private, key_file)
        return build_key_set(private_pem, kid, extra or {}) if private_pem else None
    if dev_generate:
        return generate_key_set(kid, extra or {})
    env.errors.append("NJ_AUTH_SIGNING_KEY_FILE is required (path to an Ed25519 PKCS8 PEM); set "
                      "NJ_AUTH_DEV_GENERATE_KEY=true to generate a throwaway key for development")
    return None


def _try(env: EnvReader, name: str, load: Callable[[str], T], path: str) -> T | None:
    try:
        return load(path)
    except KeyFileError as exc:
        env.errors.append(f"{name}: {exc}")
        return None
