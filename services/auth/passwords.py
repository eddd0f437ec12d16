"""Password hashing with argon2id, off the trio thread and bounded in concurrency.

A hash costs ``memory_kib`` of RAM and tens of milliseconds of CPU, so hashes run in
worker threads behind a limiter: a burst of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar

import argon2
import argon2.exceptions
import trio

from .config import Argon2Params

T = TypeVar("T")


class Passwords:
    def __init__(self, params: Argon2Params):
        self._hasher = argon2.PasswordHasher(time_cost=params.time_cost,
                                             memory_cost=params.memory_kib,
                                             parallelism=params.parallelism,
                                             type=argon2.Type.ID)
        self._limiter = trio.CapacityLimiter(params.max_concurrency)
        self._dummy_hash = ""

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def prepare(self) -> None:
        """Make the hash that unknown users are checked against (same cost as real ones)."""
        self._dummy_hash = await self.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with no stored hash, spend the same time and say no."""
        if stored_hash is None:
            await self._run(self._matches, self._dummy_hash, password)
            return False
        return await self._run(self._matches, stored_hash, password)

    def _matches(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored_hash, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other cost settings than the current ones."""
        try:
            return bool(self._hasher.check_needs_rehash(stored_hash))
        except argon2.exceptions.InvalidHashError:
            return True
