"""Redis from trio: redis-py's blocking client in worker threads, bounded by a limiter.

Chosen over redis.asyncio (would need the asyncio bridge per call) and coredis (anyio,
native on trio, only ~15% faster per call here) because redis-py is already required and
pipelines make the per-call cost matter less: batch commands in one
:meth:`Cache.pipeline` call. Timeouts are short so a dead Redis degrades a service
quickly instead of stalling it; callers catch :class:`CacheUnavailable`.

All keys are built here, under the configured prefix, so every key a service owns is
visible in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.exceptions
import trio

from .errors import Unavailable

T = TypeVar("T")


class CacheUnavailable(Unavailable):
    """Raised when Redis cannot be reached or answers too slowly."""


class Keys:
    """Every Redis key natterjack uses, by owning service."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    # auth
    def session(self, session_id: str) -> str:
        return f"{self.prefix}auth:session:{session_id}"

    def revoked(self, session_id: str) -> str:
        return f"{self.prefix}auth:revoked:{session_id}"

    def rate(self, scope: str, subject: str) -> str:
        return f"{self.prefix}auth:rate:{scope}:{subject}"

    # gateway
    def presence(self, user_id: str) -> str:
        return f"{self.prefix}gw:presence:{user_id}"

    def last_seen(self, user_id: str) -> str:
        return f"{self.prefix}gw:last_seen:{user_id}"

    # router
    def seq(self, chat_id: str) -> str:
        return f"{self.prefix}router:seq:{chat_id}"

    def dedup(self, sender_id: str, client_msg_id: str) -> str:
        return f"{self.prefix}router:dedup:{sender_id}:{client_msg_id}"

    def members(self, chat_id: str) -> str:
        return f"{self.prefix}router:members:{chat_id}"

    # history
    def recent(self, chat_id: str) -> str:
        return f"{self.prefix}history:recent:{chat_id}"

    def recent_meta(self, chat_id: str) -> str:
        return f"{self.prefix}history:recent_meta:{chat_id}"

    # delivery-retry
    def cursor(self, device_key: str) -> str:
        return f"{self.prefix}dlv:cursor:{device_key}"

    def push(self, user_id: str) -> str:
        """Held for one push interval by the replica that pushed to the user (SET NX PX)."""
        return f"{self.prefix}dlv:push:{user_id}"


class Cache:
    def __init__(self, url: str, prefix: str, *, max_connections: int = 16,
                 socket_timeout: float = 1.0):
        self.keys = Keys(prefix)
        self.client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            max_connections=max_connections, health_check_interval=30)
        self.limiter = trio.CapacityLimiter(max_connections)

    async def run(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(client)`` in a worker thread; Redis failures become CacheUnavailable."""
        try:
            return await trio.to_thread.run_sync(fn, self.client, limiter=self.limiter)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise CacheUnavailable("redis unavailable") from exc

    async def pipeline(self, build: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """Queue commands with ``build(pipe)`` and send them in one round trip."""
        def run(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=transaction)
            build(pipe)
            return list(pipe.execute())
        return await self.run(run)

    async def ping(self) -> bool:
        try:
            return bool(await self.run(lambda c: c.ping()))
        except CacheUnavailable:
            return False

    async def probe(self, slow_after: float = 0.5) -> str:
        """``ok``; ``degraded`` when Redis answers slowly (the PING's round trip) or calls
        queue for a connection; ``down`` when it does not answer within the socket timeout."""
        def timed_ping(client: redis.Redis) -> float:
            started = time.monotonic()
            client.ping()
            return time.monotonic() - started
        try:
            took = await self.run(timed_ping)
        except (CacheUnavailable, redis.exceptions.RedisError):
            return "down"
        return "degraded" if took > slow_after or self.limiter.statistics().tasks_waiting else "ok"

    def close(self) -> None:
        self.client.close()
