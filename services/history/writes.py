"""The bodies of history's write transactions (run in a worker thread with a cursor).

A batch of stream events is stored idempotently, then what the batch changed is read back
in the same transaction, so the recent-event cache is filled with exactly what MySQL holds
(current states after edits, resolved memberships, the chat's newest seq). Retention's
trimming of old events is here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from libs import log

from .domain import StoredEvent
from .state import StoredBody
from .updates import MessageUpdate, apply_update, should_apply

logger = log.get("history.storage")

INSERT_EVENTS = (
    "INSERT IGNORE INTO history_messages (chat_id, seq, event, message_id, sender_id, "
    "sender_device_id, client_msg_id, content_type, content_version, body, ts, text_content) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
# An older change never overrides a newer one: redelivered events are harmless.
UPSERT_MEMBER = (
    "INSERT INTO history_members (chat_id, user_id, is_member, changed_seq) "
    "VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "is_member = IF(changed_seq < %s, %s, is_member), changed_seq = GREATEST(changed_seq, %s)")
UPSERT_CHAT = ("INSERT INTO history_chats (chat_id, min_seq, max_seq) VALUES (%s, 1, %s) "
               "ON DUPLICATE KEY UPDATE max_seq = GREATEST(max_seq, VALUES(max_seq))")
SELECT_TARGET = ("SELECT event, body, updated_seq FROM history_messages "
                 "WHERE chat_id = %s AND seq = %s FOR UPDATE")
UPDATE_TARGET = ("UPDATE history_messages SET state = %s, current_body = %s, updated_seq = %s, "
                 "text_content = %s WHERE chat_id = %s AND seq = %s")


@dataclass
class ChatWrite:
    """What one batch left in MySQL for one chat, for the cache."""

    chat_id: str
    max_seq: int = 0
    rows: list[StoredBody] = field(default_factory=list)
    members: list[tuple[str, bool, int]] = field(default_factory=list)  # user, member, changed_seq


@dataclass
class WriteResult:
    inserted: int
    chats: list[ChatWrite] = field(default_factory=list)

    def __int__(self) -> int:
        return self.inserted


def write_events(cur: Any, events: Sequence[StoredEvent]) -> WriteResult:
    inserted = int(cur.executemany(INSERT_EVENTS, [e.columns() for e in events]) or 0)
    if inserted < len(events):  # redeliveries, or a message_id already taken
        inserted += _store_message_id_conflicts(cur, events)
    for event in events:
        for change in event.member_changes:
            member = int(change.is_member)
            cur.execute(UPSERT_MEMBER, (change.chat_id, change.user_id, member, change.seq,
                                        change.seq, member, change.seq))
    tops: dict[str, int] = {}
    for event in events:
        tops[event.chat_id] = max(tops.get(event.chat_id, 0), event.seq)
    cur.executemany(UPSERT_CHAT, sorted(tops.items()))
    for event in sorted((e for e in events if e.update), key=lambda e: (e.chat_id, e.seq)):
        assert event.update is not None
        _apply_update(cur, event.chat_id, event.update)
    return WriteResult(inserted, [_read_back(cur, chat, events) for chat in tops])


def _apply_update(cur: Any, chat_id: str, update: MessageUpdate) -> None:
    cur.execute(SELECT_TARGET, (chat_id, update.target_seq))
    target = cur.fetchone()
    if target is None or target["event"] != "message":
        logger.warning("history.update_target_missing", chat_id=chat_id, seq=update.seq,
                       target_seq=update.target_seq)
        return
    if not should_apply(target["updated_seq"], update):
        return
    current, text = apply_update(target["body"], update)
    cur.execute(UPDATE_TARGET, (update.state, current, update.seq, text, chat_id, update.target_seq))


def _read_back(cur: Any, chat_id: str, events: Sequence[StoredEvent]) -> ChatWrite:
    mine = [e for e in events if e.chat_id == chat_id]
    seqs = sorted({e.seq for e in mine} | {e.update.target_seq for e in mine if e.update})
    written = ChatWrite(chat_id)
    cur.execute("SELECT max_seq FROM history_chats WHERE chat_id = %s", (chat_id,))
    written.max_seq = int(cur.fetchone()["max_seq"])
    cur.execute("SELECT seq, body, state, current_body, updated_seq FROM history_messages "
                f"WHERE chat_id = %s AND seq IN ({', '.join(['%s'] * len(seqs))})", [chat_id, *seqs])
    written.rows = [StoredBody(int(r["seq"]), r["body"], r["state"], r["current_body"],
                               None if r["updated_seq"] is None else int(r["updated_seq"]))
                    for r in cur.fetchall()]
    users = sorted({c.user_id for e in mine for c in e.member_changes})
    if users:
        cur.execute("SELECT user_id, is_member, changed_seq FROM history_members WHERE chat_id = %s "
                    f"AND user_id IN ({', '.join(['%s'] * len(users))})", [chat_id, *users])
        written.members = [(r["user_id"], bool(r["is_member"]), int(r["changed_seq"]))
                           for r in cur.fetchall()]
    return written


def _store_message_id_conflicts(cur: Any, events: Sequence[StoredEvent]) -> int:
    """Rows INSERT IGNORE skipped for a duplicate message_id, stored without it.

    seq must stay dense, so such an event is kept (message_id column NULL, body intact).
    """
    keys = list(dict.fromkeys(e.key for e in events))
    placeholders = ", ".join(["(%s, %s)"] * len(keys))
    cur.execute(f"SELECT chat_id, seq FROM history_messages WHERE (chat_id, seq) IN ({placeholders})",
                [part for key in keys for part in key])
    present = {(row["chat_id"], row["seq"]) for row in cur.fetchall()}
    missing = list({e.key: e for e in events if e.key not in present}.values())
    for event in missing:
        logger.error("history.message_id_conflict", chat_id=event.chat_id, seq=event.seq,
                     message_id=event.message_id)
    if not missing:
        return 0
    return int(cur.executemany(INSERT_EVENTS, [e.without_message_id().columns() for e in missing]) or 0)


# ---- retention ---------------------------------------------------------------------------
SELECT_TRIMMABLE = (
    "SELECT c.chat_id, c.min_seq, c.max_seq FROM history_chats c JOIN history_messages m "
    "ON m.chat_id = c.chat_id AND m.seq = c.min_seq WHERE c.chat_id > %s AND c.min_seq < c.max_seq "
    "AND m.ts < %s ORDER BY c.chat_id LIMIT %s")


def trimmable_chats(cur: Any, after_chat: str, cutoff_ms: int, limit: int) -> list[tuple[str, int, int]]:
    """Chats (from after_chat on, by id) whose oldest retained event is older than cutoff."""
    cur.execute(SELECT_TRIMMABLE, (after_chat, cutoff_ms, limit))
    return [(r["chat_id"], int(r["min_seq"]), int(r["max_seq"])) for r in cur.fetchall()]


def trim_chat(cur: Any, chat_id: str, cutoff_ms: int, batch: int) -> int:
    """Delete up to ``batch`` of the chat's oldest events older than cutoff (never the
    newest); raise its min_seq first so readers never see a half-trimmed bottom. Returns
    the new min_seq (unchanged when nothing was old enough)."""
    cur.execute("SELECT min_seq, max_seq FROM history_chats WHERE chat_id = %s FOR UPDATE", (chat_id,))
    chat = cur.fetchone()
    min_seq, max_seq = int(chat["min_seq"]), int(chat["max_seq"])
    cur.execute("SELECT seq, ts FROM history_messages WHERE chat_id = %s AND seq >= %s "
                "ORDER BY seq LIMIT %s", (chat_id, min_seq, batch))
    new_min = min_seq
    for row in cur.fetchall():
        if row["ts"] >= cutoff_ms or int(row["seq"]) >= max_seq:
            break
        new_min = int(row["seq"]) + 1
    if new_min > min_seq:
        cur.execute("UPDATE history_chats SET min_seq = %s WHERE chat_id = %s", (new_min, chat_id))
        cur.execute("DELETE FROM history_messages WHERE chat_id = %s AND seq < %s", (chat_id, new_min))
    return new_min
