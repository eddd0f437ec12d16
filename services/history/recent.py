"""The recent-event cache in Redis: the newest events of each chat, as page items.

Per chat, ``Keys.recent(chat)`` is a sorted set (score seq, member the page item JSON) and
``Keys.recent_meta(chat)`` a hash: ``hi`` (newest seq stored in MySQL), ``lo`` (lowest seq
held), ``ver`` (changed by every writer), ``u:<seq>`` (updated_seq of an edited/recalled
item) and ``m:<user>`` ("<1|0>:<changed_seq>", the user's membership). Every change goes
through one Lua script, so a change is atomic and never moves backwards: items replace
each other only by rising updated_seq, memberships only by rising changed_seq, ``hi`` only
grows, and a refill from a MySQL read is dropped when a writer touched the chat meanwhile.

Redis trouble never reaches callers: reads fall back to MySQL, and a chat whose cache
could not be updated after a write is marked dirty — skipped by this process's reads and
invalidated as soon as Redis answers again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from libs import log
from libs.cache import Cache, CacheUnavailable

from .state import StoredBody, item_json
from .window import CacheQuery
from .writes import ChatWrite

logger = log.get("history.recent")
PAUSE_AFTER_FAILURE_S = 1.0

STORE = """
local z, meta = KEYS[1], KEYS[2]
local mode, expect, token = ARGV[1], ARGV[2], ARGV[3]
local ttl, maxn, top, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local pos = 8
local apply = true
if mode == 'r' then apply = (redis.call('HGET', meta, 'ver') or '') == expect end
if apply and (n > 0 or top > 0) then
  local hi = tonumber(redis.call('HGET', meta, 'hi') or '0')
  if top > hi then hi = top end
  local floor = hi - maxn + 1
  for i = 0, n - 1 do
    local seq, upd, item = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1]), ARGV[pos + 2]
    pos = pos + 3
    local held = tonumber(redis.call('HGET', meta, 'u:' .. seq) or '0')
    if seq >= floor and seq <= hi and upd >= held then
      redis.call('ZREMRANGEBYSCORE', z, seq, seq)
      redis.call('ZADD', z, seq, item)
      if upd > 0 then redis.call('HSET', meta, 'u:' .. seq, upd) end
    end
  end
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. floor, 'WITHSCORES')) do
    if _ % 2 == 0 then redis.call('HDEL', meta, 'u:' .. old) end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. floor)
  local low = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  redis.call('HSET', meta, 'hi', hi, 'lo', low[2] or (hi + 1))
  if mode == 'w' then redis.call('HSET', meta, 'ver', token) end
else
  pos = pos + 3 * n
end
local members = tonumber(ARGV[pos])
for j = 1, members do
  local user, value, changed = ARGV[pos + 1], ARGV[pos + 2], tonumber(ARGV[pos + 3])
  pos = pos + 3
  local cur = redis.call('HGET', meta, 'm:' .. user)
  local cur_seq = cur and tonumber(string.match(cur, ':(%d+)$')) or -1
  if changed > cur_seq then redis.call('HSET', meta, 'm:' .. user, value .. ':' .. changed) end
end
redis.call('EXPIRE', z, ttl)
redis.call('EXPIRE', meta, ttl)
return 1
"""

INVALIDATE = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 'ver', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Snapshot:
    """One atomic read of a chat's cache for one user and one page query."""

    hi: int | None
    member: bool | None  # None: membership not cached
    ver: str
    held: list[tuple[int, bytes]]


def _new_token() -> str:
    return secrets.token_hex(8)


def _score(value: int | None, default: str) -> str:
    return default if value is None else str(value)


class RecentCache:
    def __init__(self, cache: Cache, *, max_events: int, ttl_s: int):
        self.cache = cache
        self.keys = cache.keys
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.dirty: set[str] = set()
        self._pause_until = 0.0
        self._store = cache.client.register_script(STORE)
        self._invalidate = cache.client.register_script(INVALIDATE)

    def usable(self, chat_id: str) -> bool:
        return chat_id not in self.dirty and trio.current_time() >= self._pause_until

    def _failed(self, exc: Exception) -> None:
        self._pause_until = trio.current_time() + PAUSE_AFTER_FAILURE_S
        logger.warning("history.cache_unavailable", error=repr(exc))

    async def read(self, chat_id: str, user_id: str, query: CacheQuery) -> Snapshot | None:
        """The chat's cache state for this page query; None when Redis does not answer."""
        z, meta = self.keys.recent(chat_id), self.keys.recent_meta(chat_id)

        def build(pipe: Any) -> None:
            pipe.hmget(meta, "hi", "ver", f"m:{user_id}")
            upper = _score(query.upper, "+inf")
            if query.descending:
                pipe.zrevrangebyscore(z, upper, query.lower, start=0, num=query.count, withscores=True)
            else:
                pipe.zrangebyscore(z, query.lower, upper, start=0, num=query.count, withscores=True)
        try:
            (hi, ver, member), held = await self.cache.pipeline(build, transaction=True)
        except Exception as exc:  # CacheUnavailable or a Redis error: MySQL answers instead
            self._failed(exc)
            return None
        return Snapshot(None if hi is None else int(hi), member and member.startswith(b"1") if member
                        else None, (ver or b"").decode(), [(int(s), item) for item, s in held])

    async def store_written(self, chats: Sequence[ChatWrite]) -> None:
        """After a batch's commit: add its rows, states and memberships to the cache."""
        await self.reconcile()
        token = _new_token()

        def build(pipe: Any) -> None:
            for chat in chats:
                self._store(keys=self._keys(chat.chat_id), client=pipe, args=self._args(
                    "w", "", token, chat.max_seq, chat.rows, chat.members))
        try:
            await self.cache.pipeline(build)
        except Exception as exc:  # CacheUnavailable, or a script error: never stale, mark dirty
            self.dirty.update(chat.chat_id for chat in chats)
            self._failed(exc)

    async def refill(self, chat_id: str, expect_ver: str, rows: Sequence[StoredBody],
                     member: tuple[str, bool, int] | None) -> None:
        """Fill the cache from a MySQL read of the chat's newest page (and membership)."""
        top = max((row.seq for row in rows), default=0)
        args = self._args("r", expect_ver, "", top, rows, [member] if member else [])
        try:
            await self.cache.run(lambda client: self._store(keys=self._keys(chat_id), args=args,
                                                            client=client))
        except Exception as exc:  # a missed refill only costs a later MySQL read
            self._failed(exc)

    async def invalidate(self, chat_ids: Iterable[str]) -> None:
        """Drop the chats' cached events (a new ver turns away refills already under way)."""
        ids, token = list(chat_ids), _new_token()

        def build(pipe: Any) -> None:
            for chat_id in ids:
                self._invalidate(keys=self._keys(chat_id), args=[token, self.ttl_s], client=pipe)
        await self.cache.pipeline(build)

    async def reconcile(self) -> None:
        """Invalidate the chats marked dirty, once Redis answers again."""
        if not self.dirty:
            return
        pending = set(self.dirty)
        try:
            await self.invalidate(pending)
        except CacheUnavailable:
            return
        self.dirty -= pending
        logger.info("history.cache_reconciled", chats=len(pending))

    async def run_reconciler(self, period_s: float = 1.0, *,
                             task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(period_s)
            await self.reconcile()

    def _keys(self, chat_id: str) -> list[str]:
        return [self.keys.recent(chat_id), self.keys.recent_meta(chat_id)]

    def _args(self, mode: str, expect: str, token: str, top: int, rows: Sequence[StoredBody],
              members: Sequence[tuple[str, bool, int]]) -> list[Any]:
        args: list[Any] = [mode, expect, token, self.ttl_s, self.max_events, top, len(rows)]
        for row in rows:
            args += [row.seq, row.updated_seq or 0, item_json(row)]
        args.append(len(members))
        for user, is_member, changed in members:
            args += [user, "1" if is_member else "0", changed]
        return args
