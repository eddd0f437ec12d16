"""MySQL through pymysql: blocking calls run in worker threads, bounded by the pool size.

Each :meth:`Database.transaction` borrows one connection, runs a function with a cursor
in a thread, commits, and returns the connection. Losing the connection is retried with
exponential backoff (callers pass only idempotent work as retryable); after the last
attempt the caller gets :class:`libs.errors.Unavailable`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pymysql
import pymysql.cursors
import trio

from . import log, metrics
from .config import MySQLConfig
from .errors import Unavailable

T = TypeVar("T")
logger = log.get("db")
# Server gone, lost connection, can't connect, server shutting down, lock wait, deadlock.
_RETRYABLE = {2003, 2006, 2013, 2055, 1053, 1205, 1213}
Cursor = pymysql.cursors.DictCursor


class Database:
    def __init__(self, config: MySQLConfig, *, database: str | None = None,
                 connect_timeout: float = 3.0, attempts: int | None = None,
                 backoff: float | None = None):
        self.config = config
        self.database = config.database if database is None else database
        self.connect_timeout = connect_timeout
        self.attempts = config.retry_attempts if attempts is None else attempts
        self.backoff = config.retry_base_ms / 1000 if backoff is None else backoff
        self.limiter = trio.CapacityLimiter(config.pool_size)
        self._idle: list[pymysql.Connection] = []  # type: ignore[type-arg]
        self.pool_size = config.pool_size
        self.waits = 0  # transactions that found every connection busy
        self._probe_conn: pymysql.Connection | None = None  # type: ignore[type-arg]
        self._probe_lock = threading.Lock()
        metrics.track_pool(self)

    @property
    def pool_in_use(self) -> int:
        return int(self.limiter.borrowed_tokens)

    @property
    def pool_waiting(self) -> int:
        return self.limiter.statistics().tasks_waiting

    def _connect(self, timeout: float = 30) -> pymysql.Connection:  # type: ignore[type-arg]
        return pymysql.connect(
            host=self.config.host, port=self.config.port, user=self.config.user,
            password=self.config.password, database=self.database or None, charset="utf8mb4",
            autocommit=False, connect_timeout=min(self.connect_timeout, timeout),
            read_timeout=timeout, write_timeout=timeout, cursorclass=Cursor)

    def _run_sync(self, fn: Callable[[Any], T]) -> T:
        conn = self._idle.pop() if self._idle else self._connect()
        try:
            with conn.cursor() as cursor:
                result = fn(cursor)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except pymysql.Error:
                conn.close()
                raise
            self._idle.append(conn)
            raise
        self._idle.append(conn)
        return result

    async def transaction(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run ``fn(cursor)`` in one transaction in a worker thread; returns its result."""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            if self.limiter.available_tokens == 0:
                self.waits += 1
            try:
                return await trio.to_thread.run_sync(self._run_sync, fn, limiter=self.limiter)
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else 0
                if code not in _RETRYABLE:
                    raise
                if not retry or attempt == self.attempts:
                    raise Unavailable("database unavailable", details={"mysql": code}) from exc
                logger.warning("db.retry", attempt=attempt, error=str(exc), retry_in=delay)
                await trio.sleep(delay)
                delay *= 2
            except pymysql.err.InterfaceError as exc:
                if not retry or attempt == self.attempts:
                    raise Unavailable("database unavailable") from exc
                logger.warning("db.retry", attempt=attempt, error=str(exc), retry_in=delay)
                await trio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def fetchall(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        def run(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql, args)
            return list(cur.fetchall())
        return await self.transaction(run)

    async def fetchone(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, args)
        return rows[0] if rows else None

    async def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> int:
        def run(cur: Any) -> int:
            return int(cur.execute(sql, args))
        return await self.transaction(run)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        def run(cur: Any) -> int:
            return int(cur.executemany(sql, rows))
        return await self.transaction(run)

    async def ping(self) -> bool:
        try:
            await self.transaction(lambda cur: cur.execute("SELECT 1"), retry=False)
            return True
        except (Unavailable, pymysql.Error):
            return False

    async def probe(self, timeout: float = 2.0, slow_after: float = 0.5) -> str:
        """Health of the server and the pool: ``ok``; ``degraded`` when the server answers
        slowly or transactions queue for a connection; ``down`` when it does not answer.

        The ``SELECT 1`` runs on a connection of its own, outside the pool: a pool busy
        with slow queries must not read as a dead server, nor a dead server wait in line.
        Only the query's round trip counts as the answer time (not a reconnect, nor the
        wait for a worker thread on a loaded machine).
        """
        with trio.move_on_after(timeout):
            took = await trio.to_thread.run_sync(self._probe_sync, timeout, abandon_on_cancel=True)
            if took is None:
                return "down"
            return "degraded" if took > slow_after or self.pool_waiting else "ok"
        return "down"

    def _probe_sync(self, timeout: float) -> float | None:
        """Seconds ``SELECT 1`` took, None if it failed."""
        if not self._probe_lock.acquire(blocking=False):
            return None  # the last probe still hangs: the server does not answer
        try:
            if self._probe_conn is None:
                self._probe_conn = self._connect(timeout)
            started = time.monotonic()
            with self._probe_conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            return time.monotonic() - started
        except (pymysql.Error, OSError):
            with contextlib.suppress(pymysql.Error):
                if self._probe_conn is not None:
                    self._probe_conn.close()
            self._probe_conn = None
            return None
        finally:
            self._probe_lock.release()

    def close(self) -> None:
        with contextlib.suppress(pymysql.Error):
            if self._probe_conn is not None:
                self._probe_conn.close()
        while self._idle:
            with contextlib.suppress(pymysql.Error):
                self._idle.pop().close()
