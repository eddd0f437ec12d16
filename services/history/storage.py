"""history's MySQL I/O: writing batches of stream events, reading pages and single events.

Every public method is one transaction (one worker-thread hop). Reads return stored
bodies as text; turning them into replies is the handlers' job. A Redis cache of recent
events can sit in front of :meth:`HistoryStorage.read_page` without changing its callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs import log
from libs.db import Database

from .domain import Access, PagePlan, StoredEvent

logger = log.get("history.storage")

INSERT_EVENTS = (
    "INSERT IGNORE INTO history_messages (chat_id, seq, event, message_id, sender_id, "
    "sender_device_id, client_msg_id, content_type, content_version, body, ts) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
# An older change never overrides a newer one: redelivered events are harmless.
UPSERT_MEMBER = (
    "INSERT INTO history_members (chat_id, user_id, is_member, changed_seq) "
    "VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "is_member = IF(changed_seq < %s, %s, is_member), changed_seq = GREATEST(changed_seq, %s)")
SELECT_MEMBER = "SELECT is_member FROM history_members WHERE chat_id = %s AND user_id = %s"
SELECT_ANY_MEMBER = "SELECT 1 FROM history_members WHERE chat_id = %s LIMIT 1"
SELECT_EVENT = "SELECT body FROM history_messages WHERE chat_id = %s AND seq = %s"
SELECT_MESSAGE = "SELECT chat_id, body FROM history_messages WHERE message_id = %s"


@dataclass(frozen=True, slots=True)
class StoredBody:
    seq: int
    body: str


class HistoryStorage:
    def __init__(self, db: Database):
        self.db = db

    async def write_events(self, events: Sequence[StoredEvent]) -> int:
        """Store a batch idempotently in one transaction; returns how many rows were new."""
        return await self.db.transaction(lambda cur: _write_events(cur, events))

    async def read_page(self, chat_id: str, user_id: str,
                        plan: PagePlan) -> tuple[Access, list[StoredBody]]:
        """The user's access to the chat and, for a member, up to plan.fetch_limit rows."""
        def run(cur: Any) -> tuple[Access, list[StoredBody]]:
            access = _access(cur, chat_id, user_id)
            return access, _page(cur, chat_id, plan) if access is Access.MEMBER else []
        return await self.db.transaction(run)

    async def read_event(self, chat_id: str, user_id: str, seq: int) -> tuple[Access, str | None]:
        def run(cur: Any) -> tuple[Access, str | None]:
            access = _access(cur, chat_id, user_id)
            if access is not Access.MEMBER:
                return access, None
            cur.execute(SELECT_EVENT, (chat_id, seq))
            row = cur.fetchone()
            return access, row["body"] if row else None
        return await self.db.transaction(run)

    async def read_message(self, user_id: str,
                           message_id: str) -> tuple[str, Access, str] | None:
        """(chat_id, the user's access, body) of the message, None when it is not stored."""
        def run(cur: Any) -> tuple[str, Access, str] | None:
            cur.execute(SELECT_MESSAGE, (message_id,))
            row = cur.fetchone()
            if row is None:
                return None
            return row["chat_id"], _access(cur, row["chat_id"], user_id), row["body"]
        return await self.db.transaction(run)


def _write_events(cur: Any, events: Sequence[StoredEvent]) -> int:
    inserted = int(cur.executemany(INSERT_EVENTS, [e.columns() for e in events]) or 0)
    if inserted < len(events):  # redeliveries, or a message_id already taken
        inserted += _store_message_id_conflicts(cur, events)
    for event in events:
        for change in event.member_changes:
            member = int(change.is_member)
            cur.execute(UPSERT_MEMBER, (change.chat_id, change.user_id, member, change.seq,
                                        change.seq, member, change.seq))
    return inserted


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


def _access(cur: Any, chat_id: str, user_id: str) -> Access:
    cur.execute(SELECT_MEMBER, (chat_id, user_id))
    row = cur.fetchone()
    if row is not None:
        return Access.MEMBER if row["is_member"] else Access.NOT_MEMBER
    cur.execute(SELECT_ANY_MEMBER, (chat_id,))
    return Access.NOT_MEMBER if cur.fetchone() else Access.UNKNOWN_CHAT


def _page(cur: Any, chat_id: str, plan: PagePlan) -> list[StoredBody]:
    where: list[str] = ["chat_id = %s"]
    args: list[Any] = [chat_id]
    if plan.after is not None:
        where.append("seq > %s")
        args.append(plan.after)
    if plan.before is not None:
        where.append("seq < %s")
        args.append(plan.before)
    order = "DESC" if plan.newest_first else "ASC"
    cur.execute(f"SELECT seq, body FROM history_messages WHERE {' AND '.join(where)} "
                f"ORDER BY seq {order} LIMIT %s", [*args, plan.fetch_limit])
    return [StoredBody(int(row["seq"]), row["body"]) for row in cur.fetchall()]
