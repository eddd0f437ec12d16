"""Login lockouts and registration limits: the Redis side of :mod:`domain`'s rate-limit rules.

Login records live in Redis hashes ``Keys.rate("login_user" | "login_ip", subject)``;
they are read, decided on (pure, :func:`domain.admit_attempt`) and written back under
WATCH, so concurrent attempts on one username or address never lose a count.
Registrations per address are a fixed one-hour counter ``Keys.rate("register_ip", ...)``.

Redis unreachable: limits are skipped with a warning (at most one per 10 s) and logins
keep working from MySQL. Availability wins over brute-force protection while Redis is
away; argon2's cost still bounds the guessing rate per core.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.exceptions
import trio

from libs import log
from libs.cache import Cache, CacheUnavailable
from libs.ids import now_ms

from . import domain
from .config import RateLimitParams
from .domain import Admission, Attempts, LockoutPolicy
from .errors import RateLimited

logger = log.get("auth.ratelimit")
T = TypeVar("T")
HOUR_MS = 3_600_000
WATCH_TRIES = 50  # many logins from one address (a NAT) race on its key
CONTENDED_RETRY_MS = 100  # a caller that lost the WATCH race every time retries after this
USER, IP = "login_user", "login_ip"
SCOPE_NAMES = {USER: "username", IP: "client_ip"}  # as reported in details.scope
# Given the current records: (result, records to store or None to store nothing).
Decide = Callable[[list[Attempts]], tuple[T, list[Attempts | None] | None]]


class Contended(Exception):
    """Every WATCH try lost to a concurrent writer of the same keys."""


class RateLimits:
    def __init__(self, cache: Cache | None, params: RateLimitParams):
        self.cache = cache
        self.params = params
        self.policies = {USER: params.username_policy, IP: params.ip_policy}
        self._warned_at = -1e9

    @staticmethod
    def _scopes(username_key: str | None, client_ip: str | None) -> list[tuple[str, str]]:
        """(scope, subject) of every limit that applies to this login."""
        return [(scope, subject) for scope, subject in ((USER, username_key), (IP, client_ip))
                if subject]

    async def admit_login(self, username_key: str | None, client_ip: str | None) -> None:
        """Count a login attempt up front, or raise RateLimited while a lock holds."""
        scopes = self._scopes(username_key, client_ip)
        policies = [self.policies[scope] for scope, _ in scopes]
        now = now_ms()

        def decide(records: list[Attempts]) -> tuple[Admission, list[Attempts | None] | None]:
            admission = domain.admit_attempt(records, now, policies)
            return admission, list(admission.records) if admission.allowed else None
        try:
            admission = await self._update(scopes, decide)
        except Contended:
            raise RateLimited(CONTENDED_RETRY_MS, SCOPE_NAMES[scopes[0][0]]) from None
        if admission is not None and not admission.allowed:
            raise RateLimited(admission.retry_after_ms, SCOPE_NAMES[scopes[admission.locked_by][0]])

    async def login_succeeded(self, username_key: str | None, client_ip: str | None) -> None:
        """A success clears the username's record and takes back the address's count."""
        await self.forgive_login(username_key, client_ip, clear_username=True)

    async def forgive_login(self, username_key: str | None, client_ip: str | None, *,
                            clear_username: bool = False) -> None:
        """Take back the up-front count of an attempt that did not fail on its credentials."""
        scopes = self._scopes(username_key, client_ip)
        now = now_ms()

        def decide(records: list[Attempts]) -> tuple[None, list[Attempts | None]]:
            return None, [None if scope == USER and clear_username
                          else domain.forgive(record, now, self.policies[scope])
                          for (scope, _), record in zip(scopes, records, strict=True)]
        try:
            await self._update(scopes, decide)
        except Contended:  # the count stays; the record expires after its window
            logger.info("auth.rate_forgive_contended")

    async def admit_registration(self, client_ip: str | None) -> None:
        """Count a registration from ``client_ip``; raise RateLimited over the hourly limit."""
        limit = self.params.register_per_ip_per_hour
        if not client_ip or not limit or self.cache is None:
            return
        key = self.cache.keys.rate("register_ip", client_ip)

        def build(pipe: Any) -> None:
            pipe.set(key, 0, px=HOUR_MS, nx=True)
            pipe.incr(key)
            pipe.pttl(key)
        try:
            _, count, left_ms = await self.cache.pipeline(build, transaction=True)
        except (CacheUnavailable, redis.exceptions.RedisError) as exc:
            self._skipped(exc)
            return
        wait = domain.registration_wait_ms(int(count), int(left_ms), limit)
        if wait:
            raise RateLimited(wait, "register")

    # ---- Redis ---------------------------------------------------------------------------
    async def _update(self, scopes: list[tuple[str, str]], decide: Decide[T]) -> T | None:
        """Run ``decide`` on the scopes' records atomically; None when Redis is unreachable."""
        if self.cache is None or not scopes:
            return None
        keys = [self.cache.keys.rate(scope, subject) for scope, subject in scopes]
        policies = [self.policies[scope] for scope, _ in scopes]
        try:
            return await self.cache.run(lambda client: _watched(client, keys, policies, decide))
        except (CacheUnavailable, redis.exceptions.RedisError) as exc:
            self._skipped(exc)
            return None

    def _skipped(self, exc: Exception) -> None:
        now = trio.current_time()
        if now - self._warned_at > 10:  # once per 10 s while Redis is away
            self._warned_at = now
            logger.warning("auth.rate_limit_skipped", error=repr(exc),
                           note="redis unavailable: login and register limits are off")


def _decode(raw: dict[Any, Any]) -> Attempts:
    """A record from HGETALL (bytes keys and values; empty for a missing key)."""
    if not raw:
        return Attempts()
    return Attempts(int(raw.get(b"f", 0)), int(raw.get(b"t", 0)), int(raw.get(b"u", 0)))


def _watched(client: redis.Redis, keys: list[str], policies: list[LockoutPolicy],
             decide: Decide[T]) -> T:
    """Read, decide, write under WATCH; retried while another caller changes a key."""
    with client.pipeline() as pipe:
        for attempt in range(WATCH_TRIES):
            try:
                pipe.watch(*keys)
                result, updated = decide([_decode(pipe.hgetall(key)) for key in keys])
                if updated is None:
                    pipe.unwatch()
                    return result
                pipe.multi()
                for key, record, policy in zip(keys, updated, policies, strict=True):
                    _store(pipe, key, record, policy)
                pipe.execute()
                return result
            except redis.exceptions.WatchError:
                # Runs in a worker thread: a short randomised pause spreads the racers out.
                time.sleep(random.uniform(0, 0.001 * (attempt + 1)))
    raise Contended()


def _store(pipe: Any, key: str, record: Attempts | None, policy: LockoutPolicy) -> None:
    now = now_ms()
    ttl_ms = domain.expiry_ts(record, policy) - now if record else 0
    if record is None or ttl_ms <= 0 or (record.failures == 0 and record.locked_until <= now):
        pipe.delete(key)
        return
    pipe.hset(key, mapping={"f": record.failures, "t": record.last_ts, "u": record.locked_until})
    pipe.pexpire(key, ttl_ms)
