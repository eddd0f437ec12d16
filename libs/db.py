"""MySQL through pymysql: blocking calls run in worker threads, bounded by the pool size.

Each :meth:`Database.transaction` borrows one connection, runs a function with a cursor
in a thread, commits, and returns the connection. Every socket operation is bounded
(``NJ_MYSQL_CONNECT_TIMEOUT_MS``, ``NJ_MYSQL_READ_TIMEOUT_MS``, ``NJ_MYSQL_WRITE_TIMEOUT_MS``),
so a hung server fails a call instead of holding it. A lost connection is discarded, never
put back in the pool. Lock waits and deadlocks are retried with exponential backoff
(callers pass only idempotent work as retryable), and so is a pooled connection that went
stale; a server that refuses, drops a fresh connection or times out opens the circuit
breaker (:mod:`libs.breaker`): from then on calls fail at once with
:class:`libs.errors.Unavailable` until a trial call or a health probe gets an answer.
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
from .breaker import Breaker
from .config import MySQLConfig
from .errors import Unavailable

T = TypeVar("T")
logger = log.get("db")
# Server gone, lost connection, can't connect, server shutting down, too many connections
# (the server turns new ones away): the connection is dead or never was.
_GONE = {2003, 2006, 2013, 2055, 1053, 1040}
# Lock wait, deadlock: the transaction lost, the connection is fine.
_CONTENDED = {1205, 1213}
Cursor = pymysql.cursors.DictCursor


class _Lost(Exception):
    """The connection died under a call; ``away``: the server itself looks away (a fresh
    connection failed, or an answer timed out), not merely a stale pooled connection."""

    def __init__(self, error: BaseException, away: bool):
        super().__init__(str(error))
        self.error, self.away = error, away


def _dead(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.OperationalError):
        return bool(exc.args) and exc.args[0] in _GONE
    return isinstance(exc, pymysql.err.InterfaceError | OSError)


class Database:
    def __init__(self, config: MySQLConfig, *, database: str | None = None,
                 connect_timeout: float | None = None, attempts: int | None = None,
                 backoff: float | None = None):
        self.config = config
        self.database = config.database if database is None else database
        self.connect_timeout = config.connect_timeout_ms / 1000 if connect_timeout is None else connect_timeout
        self.read_timeout = config.read_timeout_ms / 1000
        self.write_timeout = config.write_timeout_ms / 1000
        self.attempts = config.retry_attempts if attempts is None else attempts
        self.backoff = config.retry_base_ms / 1000 if backoff is None else backoff
        self.breaker = Breaker("mysql", self.backoff, config.breaker_max_ms / 1000)
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

    def _connect(self, timeout: float | None = None) -> pymysql.Connection:  # type: ignore[type-arg]
        read = self.read_timeout if timeout is None else min(self.read_timeout, timeout)
        write = self.write_timeout if timeout is None else min(self.write_timeout, timeout)
        return pymysql.connect(
            host=self.config.host, port=self.config.port, user=self.config.user,
            password=self.config.password, database=self.database or None, charset="utf8mb4",
            autocommit=False, connect_timeout=min(self.connect_timeout, read),
            read_timeout=read, write_timeout=write, cursorclass=Cursor)

    def _run_sync(self, fn: Callable[[Any], T]) -> T:
        fresh = not self._idle
        try:
            conn = self._idle.pop() if self._idle else self._connect()
        except (pymysql.Error, OSError) as exc:
            if _dead(exc):
                raise _Lost(exc, away=True) from exc
            raise  # the server answered: a bad login or database is no outage
        try:
            with conn.cursor() as cursor:
                result = fn(cursor)
            conn.commit()
        except BaseException as exc:
            if _dead(exc):  # no rollback: it would wait on the same dead socket
                _discard(conn)
                raise _Lost(exc, away=fresh or "timed out" in str(exc)) from exc
            try:
                conn.rollback()
            except (pymysql.Error, OSError):
                _discard(conn)
                raise exc from None
            self._idle.append(conn)
            raise
        self._idle.append(conn)
        return result

    async def transaction(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run ``fn(cursor)`` in one transaction in a worker thread; returns its result.

        Raises Unavailable at once while the breaker is open."""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            trial = self.breaker.admit()
            if self.limiter.available_tokens == 0:
                self.waits += 1
            try:
                result = await trio.to_thread.run_sync(self._run_sync, fn, limiter=self.limiter)
            except _Lost as lost:
                last = not retry or attempt == self.attempts
                if lost.away or trial:
                    self._trip()
                    raise Unavailable("database unavailable", details=_details(lost.error)) from lost.error
                self._drop_idle()  # one stale pooled connection: the others are likely stale too
                if last:
                    raise Unavailable("database unavailable", details=_details(lost.error)) from lost.error
                logger.warning("db.retry", attempt=attempt, error=str(lost.error), retry_in=delay)
            except pymysql.err.OperationalError as exc:
                self.breaker.succeeded()  # the server answered
                if not exc.args or exc.args[0] not in _CONTENDED:
                    raise
                if not retry or attempt == self.attempts:
                    raise Unavailable("database unavailable", details={"mysql": exc.args[0]}) from exc
                logger.warning("db.retry", attempt=attempt, error=str(exc), retry_in=delay)
            except pymysql.Error:
                self.breaker.succeeded()  # the server answered (a constraint, a syntax error)
                raise
            except BaseException:
                if trial:
                    self.breaker.abandoned()
                raise
            else:
                self.breaker.succeeded()
                return result
            await trio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _trip(self) -> None:
        self.breaker.failed()
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            _discard(conn)

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
            self.breaker.succeeded()  # the server answers: callers need not wait for a trial
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
        self._drop_idle()


def _discard(conn: pymysql.Connection) -> None:  # type: ignore[type-arg]
    with contextlib.suppress(pymysql.Error, OSError):
        conn.close()


def _details(error: BaseException) -> dict[str, Any]:
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    return {"mysql": code} if code else {}
