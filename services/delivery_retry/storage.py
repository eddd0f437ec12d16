"""delivery-retry's MySQL I/O: the projection tables and the device cursors.

Every write is an idempotent upsert merging like :mod:`.domain` does (GREATEST for seqs,
last-writer-wins by seq for memberships), so a replayed batch changes nothing. Rows are
written in key order so concurrent transactions lock them in the same order.
``VALUES(col)`` in ``ON DUPLICATE KEY UPDATE`` is used because both MariaDB and MySQL 8
accept it (MySQL's row alias syntax is not MariaDB's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.db import Database

from . import domain
from .ack_writer import AckBatch
from .domain import Ack, AckOutcome, CursorKey, Projection, StreamEvent
from .errors import DeliveryError
from .retries import EventRef
from .schedule_storage import EVENT_COLUMNS, event_ref

UPSERT_CHAT = (
    "INSERT INTO dlv_chats (chat_id, last_seq, updated_ts) VALUES (%s, %s, %s) "
    "ON DUPLICATE KEY UPDATE last_seq = GREATEST(last_seq, VALUES(last_seq)), "
    "updated_ts = VALUES(updated_ts)")
# `active` is assigned before `member_seq` and reads the old member_seq: correct both with
# left-to-right assignment (the default) and with MariaDB's SIMULTANEOUS_ASSIGNMENT mode.
UPSERT_MEMBER = (
    "INSERT INTO dlv_members (chat_id, user_id, active, member_seq) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE "
    "active = IF(VALUES(member_seq) > member_seq, VALUES(active), "
    "IF(VALUES(member_seq) = member_seq, LEAST(active, VALUES(active)), active)), "
    "member_seq = GREATEST(member_seq, VALUES(member_seq))")
UPSERT_CURSOR = (
    "INSERT INTO dlv_cursors (user_id, device_id, chat_id, acked_seq, updated_ts) "
    "VALUES (%s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE updated_ts = IF(VALUES(acked_seq) > acked_seq, "
    "VALUES(updated_ts), updated_ts), acked_seq = GREATEST(acked_seq, VALUES(acked_seq))")
DEVICE_CHATS = (
    "SELECT m.chat_id, COALESCE(c.acked_seq, 0) AS after_seq, ch.last_seq "
    "FROM dlv_members m JOIN dlv_chats ch ON ch.chat_id = m.chat_id "
    "LEFT JOIN dlv_cursors c ON c.user_id = m.user_id AND c.device_id = %s "
    "AND c.chat_id = m.chat_id "
    "WHERE m.user_id = %s AND m.active = 1{behind} "
    "ORDER BY m.chat_id")
BEHIND_CHATS = DEVICE_CHATS.format(behind=" AND ch.last_seq > COALESCE(c.acked_seq, 0)")
ALL_CHATS = DEVICE_CHATS.format(behind="")
DEVICE_CHAT = (
    "SELECT ch.last_seq, COALESCE(m.active, 0) AS active, c.acked_seq "
    "FROM dlv_chats ch "
    "LEFT JOIN dlv_members m ON m.chat_id = ch.chat_id AND m.user_id = %s "
    "LEFT JOIN dlv_cursors c ON c.user_id = %s AND c.device_id = %s AND c.chat_id = ch.chat_id "
    "WHERE ch.chat_id = %s")
INSERT_EVENT = (
    "INSERT IGNORE INTO dlv_events (chat_id, seq, kind, message_id, sender_id, sender_device_id, ts) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)")
UPSERT_CHECK = (
    "INSERT INTO dlv_checks (chat_id, check_seq, next_seq, due_ts) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE next_seq = GREATEST(next_seq, VALUES(next_seq))")


@dataclass(frozen=True, slots=True)
class DeviceChat:
    """One device's view of one chat: None last_seq means the chat is unknown."""

    last_seq: int | None
    is_member: bool
    acked_seq: int | None


def _rows_in(columns: str, count: int, width: int) -> str:
    """``(a, b) IN ((%s, %s), ...)``: a row-constructor IN both servers run as a key range."""
    one = "(" + ", ".join(["%s"] * width) + ")"
    return f"({columns}) IN ({', '.join([one] * count)})"


def _covered(cur: Any, acks: Sequence[Ack], outcomes: Sequence[AckOutcome | DeliveryError]
             ) -> dict[str, list[EventRef]]:
    """The messages in each chat's moved cursor range (receipts), at most 5,000 a chat."""
    ranges: dict[str, tuple[int, int]] = {}
    for ack, o in zip(acks, outcomes, strict=True):
        if isinstance(o, AckOutcome) and o.acked_seq > o.previous:
            low, high = ranges.get(ack.chat_id, (o.previous, o.acked_seq))
            ranges[ack.chat_id] = (min(low, o.previous), max(high, o.acked_seq))
    found = {}
    for chat_id, (low, high) in sorted(ranges.items()):
        cur.execute(f"SELECT {EVENT_COLUMNS} FROM dlv_events WHERE chat_id = %s AND "
                    "kind = 'message' AND seq > %s AND seq <= %s ORDER BY seq LIMIT 5000",
                    (chat_id, low, high))
        found[chat_id] = [event_ref(row) for row in cur.fetchall()]
    return found


def _active_members(cur: Any, chat_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {c: [] for c in chat_ids}
    if chat_ids:
        cur.execute("SELECT chat_id, user_id FROM dlv_members WHERE active = 1 AND chat_id IN ("
                    + ", ".join(["%s"] * len(chat_ids)) + ")", chat_ids)
        for row in cur.fetchall():
            found[row["chat_id"]].append(row["user_id"])
    return found


class Storage:
    def __init__(self, db: Database, check_delay_ms: int = 1000):
        self.db = db
        self.check_delay_ms = check_delay_ms

    # ---- projection ----------------------------------------------------------------
    async def apply_projection(self, projection: Projection, now_ms: int,
                               events: Sequence[StreamEvent] = ()) -> dict[str, list[str]]:
        """Merge one batch's changes into dlv_chats and dlv_members, record its events and
        schedule a look at each chat it touched, all in one transaction; returns the
        active members of each chat the batch has messages in (whom to push to), read in
        the same transaction rather than in one more per chat."""
        chats = [(chat_id, seq, now_ms) for chat_id, seq in projection.chat_rows()]
        members = [(c, u, int(active), seq) for c, u, active, seq in projection.member_rows()]
        rows = sorted(event.row() for event in events)
        due = now_ms + self.check_delay_ms
        checks = [(c, s, s, due) for c, s in projection.chat_rows()] if events else []
        talked = sorted({e.chat_id for e in events if e.kind == "message"})

        def run(cur: Any) -> dict[str, list[str]]:
            for sql, values in ((UPSERT_CHAT, chats), (UPSERT_MEMBER, members),
                                (INSERT_EVENT, rows), (UPSERT_CHECK, checks)):
                if values:
                    cur.executemany(sql, values)
            return _active_members(cur, talked)
        return await self.db.transaction(run)

    # ---- acks -------------------------------------------------------------------------
    async def write_acks(self, acks: Sequence[Ack], now_ms: int
                         ) -> list[AckOutcome | DeliveryError]:
        """Check and apply a batch of acks in one transaction; one outcome per ack, in order."""
        return await self.db.transaction(lambda cur: self._write_acks(cur, acks, now_ms))

    async def write_ack_batch(self, acks: Sequence[Ack], now_ms: int) -> AckBatch:
        """:meth:`write_acks`, plus the messages the moved cursors covered (whom to send
        receipts), read in the same transaction rather than in one more per chat."""
        def run(cur: Any) -> AckBatch:
            outcomes = self._write_acks(cur, acks, now_ms)
            return AckBatch(outcomes, _covered(cur, acks, outcomes))
        return await self.db.transaction(run)

    def _write_acks(self, cur: Any, acks: Sequence[Ack], now_ms: int
                    ) -> list[AckOutcome | DeliveryError]:
        last_seqs = self._last_seqs(cur, sorted({a.chat_id for a in acks}))
        members = self._active_pairs(cur, sorted({(a.chat_id, a.user_id) for a in acks}))
        verdicts = [domain.judge_ack(a, last_seqs.get(a.chat_id), (a.chat_id, a.user_id) in members)
                    for a in acks]
        merged = domain.merge_acks(a for a, v in zip(acks, verdicts, strict=True) if v is None)
        if not merged:
            return [v for v in verdicts if v is not None]
        keys = sorted(merged)
        before = self._cursors(cur, keys)
        cur.executemany(UPSERT_CURSOR, [(*key, merged[key], now_ms) for key in keys])
        after = self._cursors(cur, keys)
        return [v if v is not None else AckOutcome(after[a.key], a.seq > before.get(a.key, 0),
                                                   before.get(a.key, 0))
                for a, v in zip(acks, verdicts, strict=True)]

    def _last_seqs(self, cur: Any, chat_ids: list[str]) -> dict[str, int]:
        placeholders = ", ".join(["%s"] * len(chat_ids))
        cur.execute(f"SELECT chat_id, last_seq FROM dlv_chats WHERE chat_id IN ({placeholders})",
                    chat_ids)
        return {row["chat_id"]: int(row["last_seq"]) for row in cur.fetchall()}

    def _active_pairs(self, cur: Any, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        cur.execute("SELECT chat_id, user_id FROM dlv_members WHERE active = 1 AND "
                    + _rows_in("chat_id, user_id", len(pairs), 2),
                    [value for pair in pairs for value in pair])
        return {(row["chat_id"], row["user_id"]) for row in cur.fetchall()}

    def _cursors(self, cur: Any, keys: list[CursorKey]) -> dict[CursorKey, int]:
        cur.execute("SELECT user_id, device_id, chat_id, acked_seq FROM dlv_cursors WHERE "
                    + _rows_in("user_id, device_id, chat_id", len(keys), 3),
                    [value for key in keys for value in key])
        return {(r["user_id"], r["device_id"], r["chat_id"]): int(r["acked_seq"])
                for r in cur.fetchall()}

    # ---- reads ----------------------------------------------------------------------
    async def behind_chats(self, user_id: str, device_id: str, *,
                           caught_up_too: bool = False) -> list[dict[str, Any]]:
        """Every chat of the user where the device's cursor is below the chat's last_seq
        (with ``caught_up_too``, every chat of the user)."""
        rows = await self.db.fetchall(ALL_CHATS if caught_up_too else BEHIND_CHATS, (device_id, user_id))
        return [{"chat_id": r["chat_id"], "after_seq": int(r["after_seq"]),
                 "last_seq": int(r["last_seq"])} for r in rows]

    async def device_chat(self, user_id: str, device_id: str, chat_id: str) -> DeviceChat:
        row = await self.db.fetchone(DEVICE_CHAT, (user_id, user_id, device_id, chat_id))
        if row is None:
            return DeviceChat(None, False, None)
        acked = row["acked_seq"]
        return DeviceChat(int(row["last_seq"]), bool(row["active"]),
                          None if acked is None else int(acked))
