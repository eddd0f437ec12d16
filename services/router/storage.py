"""The router's I/O: its MySQL tables (chats, members, seq high-water marks) and Redis keys
(seq counters, dedup entries, member cache). Reads the gateway's presence registry."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from libs import log, presence
from libs.cache import Cache, CacheUnavailable
from libs.db import Database

from .domain import ChatSpec, next_reservation, reservation_needed

logger = log.get("router.storage")
# INCR only a counter that exists: a missing one means Redis lost it and it must be
# resumed above MySQL's high-water mark, never restarted from 1.
_INCR_EXISTING = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end return false"
MEMBER_CACHE_TTL_S = 3600


class Storage:
    def __init__(self, db: Database, cache: Cache, seq_block: int):
        self.db = db
        self.cache = cache
        self.keys = cache.keys
        self.seq_block = seq_block
        self._reserved: dict[str, int] = {}
        self._incr = cache.client.register_script(_INCR_EXISTING)

    # ---- chats --------------------------------------------------------------------------
    async def find_direct(self, pair_key: str) -> dict[str, Any] | None:
        return await self.db.fetchone("SELECT * FROM router_conversations WHERE pair_key = %s",
                                      (pair_key,))

    async def chat(self, chat_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone("SELECT * FROM router_conversations WHERE chat_id = %s",
                                      (chat_id,))

    async def create_chat(self, chat_id: str, spec: ChatSpec, creator: str, now: int) -> bool:
        """Insert the chat with seq 1 reserved for its ``created`` event; False on a pair race."""
        def run(cur: Any) -> bool:
            inserted = cur.execute(
                "INSERT IGNORE INTO router_conversations (chat_id, type, name, pair_key, created_by,"
                " created_ts, seq_hwm) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (chat_id, spec.type, spec.name, spec.pair_key, creator, now, self.seq_block))
            if not inserted:
                return False
            cur.executemany(
                "INSERT INTO router_members (chat_id, user_id, role, joined_ts) VALUES (%s, %s, %s, %s)",
                [(chat_id, user, role, now) for user, role in spec.members])
            return True
        created = await self.db.transaction(run)
        if created:
            self._reserved[chat_id] = self.seq_block
            await self.cache.run(lambda r: r.set(self.keys.seq(chat_id), 1, nx=True))
        return created

    async def chats_of(self, user_id: str) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            "SELECT c.chat_id, c.type, c.name, m.last_read_seq FROM router_members m"
            " JOIN router_conversations c ON c.chat_id = m.chat_id WHERE m.user_id = %s"
            " ORDER BY c.created_ts", (user_id,))

    async def members(self, chat_id: str) -> list[tuple[str, str]]:
        """(user, role) of every member: Redis hash first, MySQL on a miss or outage."""
        key = self.keys.members(chat_id)
        try:
            cached = await self.cache.run(lambda r: r.hgetall(key))
            if cached:
                return [(_text(u), _text(r)) for u, r in cached.items()]
        except CacheUnavailable:
            return await self._members_from_db(chat_id)
        members = await self._members_from_db(chat_id)
        if members:
            def fill(pipe: Any) -> None:
                pipe.hset(key, mapping=dict(members))
                pipe.expire(key, MEMBER_CACHE_TTL_S)
            with contextlib.suppress(CacheUnavailable):
                await self.cache.pipeline(fill)
        return members

    async def _members_from_db(self, chat_id: str) -> list[tuple[str, str]]:
        rows = await self.db.fetchall(
            "SELECT user_id, role FROM router_members WHERE chat_id = %s ORDER BY joined_ts, user_id",
            (chat_id,))
        return [(row["user_id"], row["role"]) for row in rows]

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> None:
        await self.db.execute(
            "UPDATE router_members SET last_read_seq = GREATEST(last_read_seq, %s)"
            " WHERE chat_id = %s AND user_id = %s", (seq, chat_id, user_id))

    # ---- sequence numbers ---------------------------------------------------------------
    async def next_seq(self, chat_id: str) -> int:
        """The chat's next seq: Redis INCR, covered by a MySQL reservation before use."""
        key = self.keys.seq(chat_id)
        seq = await self.cache.run(lambda r: self._incr(keys=[key], client=r))
        if seq is None:
            seq = await self._resume_counter(chat_id, key)
        if reservation_needed(seq, self._reserved.get(chat_id, 0)):
            await self._reserve(chat_id, next_reservation(seq, self.seq_block))
        return int(seq)

    async def _reserve(self, chat_id: str, upto: int) -> None:
        await self.db.execute(
            "UPDATE router_conversations SET seq_hwm = GREATEST(seq_hwm, %s) WHERE chat_id = %s",
            (upto, chat_id))
        self._reserved[chat_id] = max(self._reserved.get(chat_id, 0), upto)

    async def _resume_counter(self, chat_id: str, key: str) -> int:
        """Redis lost the counter: continue above every number that could have been issued."""
        row = await self.db.fetchone("SELECT seq_hwm FROM router_conversations WHERE chat_id = %s",
                                     (chat_id,))
        hwm = int(row["seq_hwm"]) if row else 0
        logger.warning("router.seq_counter_resumed", chat_id=chat_id, above=hwm)
        await self.cache.run(lambda r: r.set(key, hwm, nx=True))
        return int(await self.cache.run(lambda r: r.incr(key)))

    async def last_seq(self, chat_id: str) -> int:
        value = await self.cache.run(lambda r: r.get(self.keys.seq(chat_id)))
        return int(value or 0)

    # ---- idempotent sends ---------------------------------------------------------------
    async def claim_send(self, sender_id: str, client_msg_id: str, ttl_s: int) -> dict[str, Any] | None:
        """Claim (sender, client id); returns the original ack when it was already sent.

        A claim still ``pending`` (a concurrent send of the same id) is reported as such.
        """
        key = self.keys.dedup(sender_id, client_msg_id)

        def run(r: Any) -> Any:
            if r.set(key, b"pending", nx=True, ex=ttl_s):
                return None
            return r.get(key)
        previous = await self.cache.run(run)
        if previous is None:
            return None
        return {"pending": True} if previous == b"pending" else orjson.loads(previous)

    async def record_send(self, sender_id: str, client_msg_id: str, ack: dict[str, Any], ttl_s: int) -> None:
        key = self.keys.dedup(sender_id, client_msg_id)
        await self.cache.run(lambda r: r.set(key, orjson.dumps(ack), ex=ttl_s))

    async def release_send(self, sender_id: str, client_msg_id: str) -> None:
        await self.cache.run(lambda r: r.delete(self.keys.dedup(sender_id, client_msg_id)))

    # ---- presence (read-only; the gateway writes it) --------------------------------------
    async def presence(self, user_ids: list[str], ttl_s: float) -> dict[str, dict[str, str]]:
        return await presence.online_devices(self.cache, user_ids, ttl_s)

def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
