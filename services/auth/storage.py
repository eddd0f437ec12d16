"""auth's MySQL tables (``users``, ``sessions``) and its Redis hot copy of live sessions.

Redis only speeds up ``verify``: a live session is cached under ``Keys.session`` for a
short TTL, and every revocation drops that copy and leaves a ``Keys.revoked`` marker that
outlives any copy a concurrent verify may still write. Redis failures never fail a
request; MySQL stays the truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pymysql
import redis.exceptions
import trio

from libs import log, metrics
from libs.cache import Cache, CacheUnavailable
from libs.db import Database

from .domain import RefreshOutcome, RefreshPlan, Session, is_live, plan_refresh
from .errors import UsernameTaken

logger = log.get("auth.storage")
T = TypeVar("T")
COLUMNS = ("session_id, user_id, device_id, family_id, created_ts, last_seen_ts, expires_ts, "
           "revoked_ts")
INSERT_SESSION = (f"INSERT INTO sessions ({COLUMNS}, refresh_hash) "
                  "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")
DUPLICATE_KEY = 1062
# Applies to the transaction's first statement onwards (issued before any other).
READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
IN_CHUNK = 1000
PURGE_BATCH = 5000


@dataclass(frozen=True)
class RefreshResult:
    plan: RefreshPlan
    ended: list[Session]  # sessions this refresh revoked


def _session(row: dict[str, Any]) -> Session:
    return Session(**{f.name: row[f.name] for f in dataclasses.fields(Session)})


def _insert_session(cur: Any, session: Session, refresh_hash: str) -> None:
    cur.execute(INSERT_SESSION, (*dataclasses.astuple(session), refresh_hash))


def _read_committed(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """``fn`` in a READ COMMITTED transaction. Its locking reads then lock only the rows
    they find, not the index gaps next to them: under REPEATABLE READ, concurrent logins
    of *different* users whose rows sit side by side in an index deadlocked on gap locks."""
    def run(cur: Any) -> T:
        cur.execute(READ_COMMITTED)
        return fn(cur)
    return run


def _select_sessions(cur: Any, where: str, args: Sequence[Any],
                     lock: bool = False) -> list[Session]:
    suffix = " FOR UPDATE" if lock else ""
    cur.execute(f"SELECT {COLUMNS} FROM sessions WHERE {where}{suffix}", args)
    return [_session(row) for row in cur.fetchall()]


class Storage:
    def __init__(self, db: Database, cache: Cache | None, verify_cache_ttl_s: int):
        self.db = db
        self.cache = cache if verify_cache_ttl_s > 0 else None
        self.cache_ttl_ms = verify_cache_ttl_s * 1000
        self._warned_at = -1e9

    # ---- users -------------------------------------------------------------------------
    async def username_taken(self, username_lc: str) -> bool:
        row = await self.db.fetchone("SELECT 1 AS taken FROM users WHERE username_lc = %s",
                                     (username_lc,))
        return row is not None

    async def create_user(self, user_id: str, username: str, display_name: str,
                          password_hash: str, now: int) -> None:
        """Raises UsernameTaken when the lower-cased name exists (the UNIQUE index decides)."""
        try:
            await self.db.execute(
                "INSERT INTO users (user_id, username, username_lc, display_name, password_hash, "
                "created_ts) VALUES (%s, %s, %s, %s, %s, %s)",
                (user_id, username, username.lower(), display_name, password_hash, now))
        except pymysql.err.IntegrityError as exc:
            if exc.args and exc.args[0] == DUPLICATE_KEY:
                raise UsernameTaken() from None
            raise

    async def find_login(self, username_lc: str) -> tuple[str, str] | None:
        """(user_id, password_hash) of the user, or None."""
        row = await self.db.fetchone(
            "SELECT user_id, password_hash FROM users WHERE username_lc = %s", (username_lc,))
        return (row["user_id"], row["password_hash"]) if row else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.db.execute("UPDATE users SET password_hash = %s WHERE user_id = %s",
                              (password_hash, user_id))

    async def existing_users(self, user_ids: list[str]) -> set[str]:
        def run(cur: Any) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(user_ids), IN_CHUNK):
                chunk = user_ids[start:start + IN_CHUNK]
                marks = ", ".join(["%s"] * len(chunk))
                cur.execute(f"SELECT user_id FROM users WHERE user_id IN ({marks})", chunk)
                found.update(row["user_id"] for row in cur.fetchall())
            return found
        return await self.db.transaction(run) if user_ids else set()

    # ---- sessions ----------------------------------------------------------------------
    async def open_session(self, session: Session, refresh_hash: str) -> list[Session]:
        """Insert a login's session; ends the device's earlier live sessions and returns them."""
        def run(cur: Any) -> list[Session]:
            # The user's row lock serializes one user's logins (no gap locks to do it).
            cur.execute("SELECT user_id FROM users WHERE user_id = %s FOR UPDATE",
                        (session.user_id,))
            where = "user_id = %s AND device_id = %s AND revoked_ts IS NULL"
            args = (session.user_id, session.device_id)
            replaced = _select_sessions(cur, where, args, lock=True)
            cur.execute(f"UPDATE sessions SET revoked_ts = %s WHERE {where}",
                        (session.created_ts, *args))
            _insert_session(cur, session, refresh_hash)
            return [s for s in replaced if is_live(s, session.created_ts)]
        replaced = await self.db.transaction(_read_committed(run))
        await self._forget(replaced)
        return replaced

    async def refresh(self, refresh_hash: str, now: int, new_session_id: str,
                      new_refresh_hash: str, ttl_ms: int) -> RefreshResult:
        """Apply :func:`domain.plan_refresh` to the token's session, atomically."""
        def run(cur: Any) -> RefreshResult:
            rows = _select_sessions(cur, "refresh_hash = %s", (refresh_hash,), lock=True)
            plan = plan_refresh(rows[0] if rows else None, now, new_session_id, ttl_ms)
            if plan.outcome is RefreshOutcome.ROTATED and plan.successor:
                cur.execute("UPDATE sessions SET revoked_ts = %s WHERE session_id = %s",
                            (now, rows[0].session_id))
                _insert_session(cur, plan.successor, new_refresh_hash)
                return RefreshResult(plan, [rows[0]])
            if plan.outcome is RefreshOutcome.REUSED and plan.revoke_family:
                return RefreshResult(plan, self._end_family(cur, plan.revoke_family, now))
            return RefreshResult(plan, [])
        result = await self.db.transaction(_read_committed(run))
        await self._forget(result.ended)
        return result

    @staticmethod
    def _end_family(cur: Any, family_id: str, now: int) -> list[Session]:
        where = "family_id = %s AND revoked_ts IS NULL"
        ended = _select_sessions(cur, where, (family_id,), lock=True)
        cur.execute(f"UPDATE sessions SET revoked_ts = %s WHERE {where}", (now, family_id))
        return [s for s in ended if is_live(s, now)]

    async def revoke_session(self, session_id: str, user_id: str | None,
                             now: int) -> Session | None:
        """End one session if it is live (and belongs to ``user_id`` when given)."""
        where = "session_id = %s AND revoked_ts IS NULL"
        args: tuple[str, ...] = (session_id,)
        if user_id is not None:
            where, args = where + " AND user_id = %s", (session_id, user_id)
        ended = await self._revoke_where(where, args, now)
        return ended[0] if ended else None

    async def revoke_device(self, user_id: str, device_id: str, now: int) -> list[Session]:
        return await self._revoke_where("user_id = %s AND device_id = %s AND revoked_ts IS NULL",
                                        (user_id, device_id), now)

    async def _revoke_where(self, where: str, args: tuple[str, ...], now: int) -> list[Session]:
        def run(cur: Any) -> list[Session]:
            found = _select_sessions(cur, where, args, lock=True)
            cur.execute(f"UPDATE sessions SET revoked_ts = %s WHERE {where}", (now, *args))
            return [s for s in found if is_live(s, now)]
        ended = await self.db.transaction(_read_committed(run))
        await self._forget(ended)
        return ended

    async def live_devices(self, user_ids: list[str], now: int) -> dict[str, list[str]]:
        """{user: [device, ...]} of the users' live sessions (users without one are absent)."""
        def run(cur: Any) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for start in range(0, len(user_ids), IN_CHUNK):
                chunk = user_ids[start:start + IN_CHUNK]
                marks = ", ".join(["%s"] * len(chunk))
                cur.execute(f"SELECT DISTINCT user_id, device_id FROM sessions WHERE user_id IN ({marks}) "
                            "AND revoked_ts IS NULL AND expires_ts > %s ORDER BY user_id, device_id",
                            [*chunk, now])
                for row in cur.fetchall():
                    found.setdefault(row["user_id"], []).append(row["device_id"])
            return found
        return await self.db.transaction(run) if user_ids else {}

    async def live_sessions(self, user_id: str, now: int) -> list[Session]:
        rows = await self.db.fetchall(
            f"SELECT {COLUMNS} FROM sessions WHERE user_id = %s AND revoked_ts IS NULL "
            "AND expires_ts > %s ORDER BY created_ts, session_id", (user_id, now))
        return [_session(row) for row in rows]

    async def live_session(self, session_id: str, now: int) -> Session | None:
        """The session if live: Redis first, then one primary-key SELECT."""
        cached = await self._cached(session_id)
        if cached is False:
            return None
        if isinstance(cached, Session) and is_live(cached, now):
            return cached
        row = await self.db.fetchone(f"SELECT {COLUMNS} FROM sessions WHERE session_id = %s",
                                     (session_id,))
        session = _session(row) if row else None
        if session is None or not is_live(session, now):
            return None
        await self._remember(session, now)
        return session

    async def purge_expired(self, before: int) -> int:
        """Delete sessions that expired before ``before``, in batches; returns the count."""
        total = 0
        while True:
            deleted = await self.db.execute(
                f"DELETE FROM sessions WHERE expires_ts < %s LIMIT {PURGE_BATCH}", (before,))
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    # ---- Redis hot copy ----------------------------------------------------------------
    async def _cached(self, session_id: str) -> Session | bool | None:
        """The cached Session, False if marked revoked, None on a miss or Redis failure."""
        if self.cache is None:
            return None
        keys = self.cache.keys

        def build(pipe: Any) -> None:
            pipe.get(keys.session(session_id))
            pipe.exists(keys.revoked(session_id))
        try:
            raw, revoked = await self.cache.pipeline(build)
        except (CacheUnavailable, redis.exceptions.RedisError) as exc:
            self._cache_failed(exc)
            return None
        result = "revoked" if revoked else "hit" if raw else "miss"
        metrics.CACHE_LOOKUPS.labels("auth_session", result).inc()
        if revoked:
            return False
        return Session(**orjson.loads(raw)) if raw else None

    async def _remember(self, session: Session, now: int) -> None:
        if self.cache is None:
            return
        ttl_ms = min(self.cache_ttl_ms, session.expires_ts - now)
        key, value = self.cache.keys.session(session.session_id), orjson.dumps(
            dataclasses.asdict(session))
        try:
            await self.cache.run(lambda client: client.set(key, value, px=ttl_ms))
        except (CacheUnavailable, redis.exceptions.RedisError) as exc:
            self._cache_failed(exc)

    async def _forget(self, sessions: list[Session]) -> None:
        if self.cache is None or not sessions:
            return
        keys, marker_ms = self.cache.keys, 2 * self.cache_ttl_ms + 10_000

        def build(pipe: Any) -> None:
            for session in sessions:
                pipe.set(keys.revoked(session.session_id), b"1", px=marker_ms)
                pipe.delete(keys.session(session.session_id))
        try:
            await self.cache.pipeline(build)
        except (CacheUnavailable, redis.exceptions.RedisError) as exc:
            self._cache_failed(exc)

    def _cache_failed(self, exc: Exception) -> None:
        metrics.CACHE_LOOKUPS.labels("auth_session", "error").inc()
        now = trio.current_time()
        if now - self._warned_at > 10:  # once per 10 s while Redis is away
            self._warned_at = now
            logger.warning("auth.cache_unavailable", error=repr(exc))
