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
        self._batcher = _Batcher(self)

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

    async def batched(self, build: Callable[[Any], None]) -> list[Any]:
        """Like :meth:`pipeline`, but the commands of concurrent callers share one round
        trip (and one worker-thread hop): see :class:`_Batcher`. Not a transaction."""
        return await self._batcher.submit(build)

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


class _Pending:
    __slots__ = ("build", "done", "error", "result", "turn")

    def __init__(self, build: Callable[[Any], None]):
        self.build = build
        self.turn = trio.Event()  # set when done, or when this caller is to lead next
        self.done = False
        self.result: list[Any] = []
        self.error: BaseException | None = None


class _Batcher:
    """Group the pipelines of concurrent callers into one (auto-pipelining).

    The first caller leads: it takes every pipeline queued so far and runs them as one in
    a worker thread, then again until its own is done; callers that queued behind it wait
    for their results. A leader whose result is in hands leadership to the oldest waiter.
    No background task: a lone caller costs what :meth:`Cache.pipeline` costs. Waiting is
    shielded from cancellation, as a worker thread cannot be interrupted either (the
    socket timeout bounds both), so the queue never loses its leader.
    """

    def __init__(self, cache: Cache):
        self.cache = cache
        self.queue: list[_Pending] = []
        self.leading = False
        self.batches = 0  # round trips made (a test reads it)

    async def submit(self, build: Callable[[Any], None]) -> list[Any]:
        mine = _Pending(build)
        self.queue.append(mine)
        with trio.CancelScope(shield=True):
            if self.leading:
                await mine.turn.wait()
            if not mine.done:
                await self._lead(mine)
        if mine.error is not None:
            raise mine.error
        return mine.result

    async def _lead(self, mine: _Pending) -> None:
        self.leading = True
        try:
            await trio.lowlevel.checkpoint()  # callers of this same tick join the first batch
            while not mine.done:
                batch, self.queue = self.queue, []
                await self._run(batch)
        finally:
            self.leading = False
            if self.queue:
                self.queue[0].turn.set()

    async def _run(self, batch: list[_Pending]) -> None:
        self.batches += 1
        try:
            results, spans = await self.cache.run(lambda client: _execute(client, batch))
        except CacheUnavailable as exc:
            for item in batch:  # each caller raises an error of its own
                item.error = CacheUnavailable(str(exc))
                item.error.__cause__ = exc.__cause__
        except BaseException as exc:
            for item in batch:
                item.error = exc
        else:
            for item, (start, end) in zip(batch, spans, strict=True):
                if item.error is None:
                    item.result = results[start:end]
                    item.error = next((r for r in item.result if isinstance(r, Exception)), None)
        for item in batch:
            item.done = True
            item.turn.set()


def _execute(client: redis.Redis, batch: list[_Pending]) -> tuple[list[Any], list[tuple[int, int]]]:
    """Run every queued pipeline as one; each item's [start, end) of the results. A build
    that raises fails its own item only; a command's error is its own caller's."""
    pipe = client.pipeline(transaction=False)
    spans = []
    for item in batch:
        start = len(pipe.command_stack)
        try:
            item.build(pipe)
        except Exception as exc:  # noqa: BLE001 - the caller's to handle, not the batch's
            item.error = exc
            del pipe.command_stack[start:]
        spans.append((start, len(pipe.command_stack)))
    results = list(pipe.execute(raise_on_error=False)) if pipe.command_stack else []
    return results, spans
