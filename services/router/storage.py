"""The router's I/O: its MySQL tables (chats, members, seq high-water marks) and Redis keys
(seq counters, dedup entries, member cache). Reads the gateway's presence registry."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pymysql
import trio

from libs import log, presence
from libs.cache import Cache, CacheUnavailable
from libs.db import Database

from .domain import ChatSpec
from .sequences import Sequencer

logger = log.get("router.storage")
MEMBER_CACHE_TTL_S = 3600


class Storage:
    def __init__(self, db: Database, cache: Cache, seq_block: int):
        self.db = db
        self.cache = cache
        self.keys = cache.keys
        self.seq = Sequencer(db, cache, seq_block)

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
                (chat_id, spec.type, spec.name, spec.pair_key, creator, now, 1))
            if not inserted:
                return False
            cur.executemany(
                "INSERT INTO router_members (chat_id, user_id, role, joined_ts) VALUES (%s, %s, %s, %s)",
                [(chat_id, user, role, now) for user, role in spec.members])
            return True
        created = await self.db.transaction(run)
        if created:
            await self.seq.chat_created(chat_id)
        return created

    async def chats_of(self, user_id: str) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            "SELECT c.chat_id, c.type, c.name, c.confirmed_seq, m.last_read_seq FROM router_members m"
            " JOIN router_conversations c ON c.chat_id = m.chat_id WHERE m.user_id = %s"
            " ORDER BY c.created_ts", (user_id,))

    async def members(self, chat_id: str) -> list[tuple[str, str]]:
        """(user, role) of every member: Redis hash first, MySQL on a miss or outage."""
        key = self.keys.members(chat_id)
        try:
            (cached,) = await self.cache.batched(lambda pipe: pipe.hgetall(key))  # reads, edits: hot too
            if cached:
                return [(_text(u), _text(r)) for u, r in cached.items()]
        except CacheUnavailable:
            return await self._members_from_db(chat_id)
        return await self._load_members(chat_id)

    async def _load_members(self, chat_id: str) -> list[tuple[str, str]]:
        """A member-cache miss: MySQL's list, cached again (best effort)."""
        key = self.keys.members(chat_id)
        members = await self._members_from_db(chat_id)
        if members:
            def fill(pipe: Any) -> None:
                pipe.hset(key, mapping=dict(members))
                pipe.expire(key, MEMBER_CACHE_TTL_S)
            with contextlib.suppress(CacheUnavailable):
                await self.cache.pipeline(fill)
        return members

    async def members_and_claim(self, chat_id: str, sender_id: str, client_msg_id: str,
                                pending_s: int) -> tuple[list[tuple[str, str]], CachedClaim]:
        """A send's two first Redis reads in one round trip: the chat's members (as
        :meth:`members`) and the claim of (sender, client id) (as :meth:`claim_send`)."""
        key, dedup_key = self.keys.members(chat_id), self.keys.dedup(sender_id, client_msg_id)

        def build(pipe: Any) -> None:
            pipe.hgetall(key)
            pipe.set(dedup_key, b"pending", nx=True, ex=pending_s)
            pipe.get(dedup_key)
        try:
            cached, ours, value = await self.cache.batched(build)
        except CacheUnavailable:
            return await self._members_from_db(chat_id), CachedClaim(ours=False, previous=None,
                                                                    available=False)
        claim = CachedClaim.read(bool(ours), value)
        if cached:
            return [(_text(u), _text(r)) for u, r in cached.items()], claim
        try:
            return await self._load_members(chat_id), claim
        except BaseException:
            if claim.ours:  # MySQL failed us: the id stays free for a retry
                with trio.CancelScope(shield=True), contextlib.suppress(CacheUnavailable):
                    await self.release_send(sender_id, client_msg_id)
            raise

    async def _members_from_db(self, chat_id: str) -> list[tuple[str, str]]:
        rows = await self.db.fetchall(
            "SELECT user_id, role FROM router_members WHERE chat_id = %s ORDER BY joined_ts, user_id",
            (chat_id,))
        return [(row["user_id"], row["role"]) for row in rows]

    async def read_positions(self, chat_id: str) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT user_id, last_read_seq FROM router_members WHERE chat_id = %s", (chat_id,))
        return {row["user_id"]: int(row["last_read_seq"]) for row in rows}

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> bool:
        """Move the read position forward (never back); True when it moved."""
        return bool(await self.db.execute(
            "UPDATE router_members SET last_read_seq = %s"
            " WHERE chat_id = %s AND user_id = %s AND last_read_seq < %s", (seq, chat_id, user_id, seq)))

    # ---- membership changes -------------------------------------------------------------
    async def change_members(self, chat_id: str, changes: list[tuple[str, str | None]], now: int) -> None:
        """Apply (user, role) changes in one transaction: a role upserts, None removes."""
        def run(cur: Any) -> None:
            for user_id, role in changes:
                if role is None:
                    cur.execute("DELETE FROM router_members WHERE chat_id = %s AND user_id = %s",
                                (chat_id, user_id))
                else:
                    cur.execute("INSERT INTO router_members (chat_id, user_id, role, joined_ts)"
                                " VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE role = VALUES(role)",
                                (chat_id, user_id, role, now))
        await self.db.transaction(run)
        await self.forget_members(chat_id)

    async def rename(self, chat_id: str, name: str | None) -> None:
        await self.db.execute("UPDATE router_conversations SET name = %s WHERE chat_id = %s",
                              (name, chat_id))

    async def forget_members(self, chat_id: str) -> None:
        """Drop the cached member list; MySQL is read again on the next lookup."""
        key = self.keys.members(chat_id)
        try:
            await self.cache.run(lambda r: r.delete(key))
        except CacheUnavailable:
            logger.warning("router.member_cache_not_cleared", chat_id=chat_id)

    async def co_members(self, user_id: str, max_group: int) -> list[str]:
        """Users sharing a chat of at most ``max_group`` members with ``user_id`` (one query)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT o.user_id FROM router_members m"
            " JOIN router_members o ON o.chat_id = m.chat_id AND o.user_id <> m.user_id"
            " WHERE m.user_id = %s AND"
            " (SELECT COUNT(*) FROM router_members c WHERE c.chat_id = m.chat_id) <= %s",
            (user_id, max_group))
        return [row["user_id"] for row in rows]

    # ---- custom content types -----------------------------------------------------------
    async def type_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        """Registered versions (of one name, or all), oldest first."""
        sql = "SELECT name, version, registrant_id, schema_json, created_ts FROM router_message_types"
        if name is None:
            return await self.db.fetchall(sql + " ORDER BY name, version")
        return await self.db.fetchall(sql + " WHERE name = %s ORDER BY version", (name,))

    async def register_type(self, name: str, decide: Any, now: int) -> tuple[int, bool, dict[str, Any]]:
        """Insert the version ``decide(latest_row)`` names (row locked); returns (version, created, row).

        ``decide`` raises to refuse, or returns (version, insert?).
        """
        def run(cur: Any) -> tuple[int, bool, dict[str, Any]]:
            cur.execute("SELECT name, version, registrant_id, schema_json, created_ts"
                        " FROM router_message_types WHERE name = %s ORDER BY version DESC LIMIT 1"
                        " FOR UPDATE", (name,))
            latest = cur.fetchone()
            version, insert, row = decide(latest)
            if insert:
                cur.execute("INSERT INTO router_message_types (name, version, registrant_id,"
                            " schema_json, created_ts) VALUES (%s, %s, %s, %s, %s)",
                            (name, version, row["registrant_id"], row["schema_json"], now))
                row = {**row, "created_ts": now}
            return version, insert, row
        try:
            return await self.db.transaction(run)
        except pymysql.err.IntegrityError:
            # Another registration of the same version won the race: decide again.
            return await self.db.transaction(run)

    # ---- sequence numbers (see sequences.py) ------------------------------------------
    async def next_seq(self, chat_id: str) -> int:
        return await self.seq.next(chat_id)

    async def last_seq(self, chat_id: str, confirmed: int = 0) -> int:
        return await self.seq.last_seq(chat_id, confirmed)

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
        return CachedClaim.read(previous is None, previous).previous

    async def record_send(self, sender_id: str, client_msg_id: str, ack: dict[str, Any], ttl_s: int) -> None:
        key = self.keys.dedup(sender_id, client_msg_id)
        await self.cache.run(lambda r: r.set(key, orjson.dumps(ack), ex=ttl_s))

    async def release_send(self, sender_id: str, client_msg_id: str) -> None:
        await self.cache.run(lambda r: r.delete(self.keys.dedup(sender_id, client_msg_id)))

    def record_send_into(self, sender_id: str, client_msg_id: str, ack: dict[str, Any],
                         ttl_s: int) -> Callable[[Any], None]:
        """:meth:`record_send` as a pipeline step, to ride another round trip (the fan-out's)."""
        key, value = self.keys.dedup(sender_id, client_msg_id), orjson.dumps(ack)
        return lambda pipe: pipe.set(key, value, ex=ttl_s)

    # ---- presence (read-only; the gateway writes it) --------------------------------------
    async def presence(self, user_ids: list[str], ttl_s: float, *,
                       also: Callable[[Any], None] | None = None) -> dict[str, dict[str, str]]:
        """Online devices of ``user_ids``; ``also`` adds writes to the same round trip."""
        return await presence.online_devices(self.cache, user_ids, ttl_s, also=also, batched=True)


@dataclass(frozen=True)
class CachedClaim:
    """What claiming (sender, client id) in Redis found: ``ours`` (the send goes on), else
    ``previous`` (``{"pending": True}`` or the original ack); ``available`` False: Redis
    did not answer, nothing was claimed."""

    ours: bool
    previous: dict[str, Any] | None
    available: bool = True

    @classmethod
    def read(cls, ours: bool, value: bytes | None) -> CachedClaim:
        if ours or value is None:  # None: the entry expired between SET and GET; go on
            return cls(ours=ours, previous=None)
        return cls(ours=False, previous={"pending": True} if value == b"pending" else orjson.loads(value))

def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
