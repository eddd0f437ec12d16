"""history's MySQL I/O: writing batches of stream events, reading pages, events and searches.

Every public method is one transaction (one worker-thread hop). Reads return stored rows
(:class:`StoredBody`); turning them into replies is the handlers' job. The Redis cache of
recent events (``recent.py``) sits in front of :meth:`HistoryStorage.read_page`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.db import Database

from .domain import Access, PagePlan, StoredEvent
from .search import Terms, search_condition
from .state import StoredBody
from .writes import WriteResult, trim_chat, trimmable_chats, write_events

__all__ = ["HistoryStorage", "PageRead", "StoredBody", "WriteResult"]

ROW_COLUMNS = "seq, body, state, current_body, updated_seq"
SELECT_MEMBER = "SELECT is_member, changed_seq FROM history_members WHERE chat_id = %s AND user_id = %s"
SELECT_ANY_MEMBER = "SELECT 1 FROM history_members WHERE chat_id = %s LIMIT 1"
SELECT_MIN_SEQ = "SELECT min_seq FROM history_chats WHERE chat_id = %s"
SELECT_EVENT = f"SELECT {ROW_COLUMNS} FROM history_messages WHERE chat_id = %s AND seq = %s"
SELECT_MESSAGE = f"SELECT chat_id, {ROW_COLUMNS} FROM history_messages WHERE message_id = %s"


@dataclass(frozen=True)
class PageRead:
    """A page read from MySQL: the asking user's access and, for a member, the rows."""

    access: Access
    rows: list[StoredBody] = field(default_factory=list)
    min_seq: int = 1  # lowest seq retention kept
    member_seq: int | None = None  # changed_seq of the user's membership row


def to_row(row: dict[str, Any]) -> StoredBody:
    updated = row.get("updated_seq")
    return StoredBody(int(row["seq"]), row["body"], row.get("state") or "active",
                      row.get("current_body"), None if updated is None else int(updated))


class HistoryStorage:
    def __init__(self, db: Database):
        self.db = db

    async def write_events(self, events: Sequence[StoredEvent]) -> WriteResult:
        """Store a batch idempotently in one transaction (see ``writes.py``)."""
        return await self.db.transaction(lambda cur: write_events(cur, events))

    async def read_page(self, chat_id: str, user_id: str, plan: PagePlan) -> PageRead:
        """The user's access to the chat and, for a member, up to plan.fetch_limit rows."""
        def run(cur: Any) -> PageRead:
            access, member_seq = _access(cur, chat_id, user_id)
            if access is not Access.MEMBER:
                return PageRead(access)
            min_seq = _min_seq(cur, chat_id)
            return PageRead(access, _page(cur, chat_id, plan, min_seq), min_seq, member_seq)
        return await self.db.transaction(run)

    async def read_event(self, chat_id: str, user_id: str,
                         seq: int) -> tuple[Access, StoredBody | None]:
        def run(cur: Any) -> tuple[Access, StoredBody | None]:
            access, _ = _access(cur, chat_id, user_id)
            if access is not Access.MEMBER:
                return access, None
            cur.execute(SELECT_EVENT, (chat_id, seq))
            row = cur.fetchone()
            return access, to_row(row) if row else None
        return await self.db.transaction(run)

    async def read_message(self, user_id: str,
                           message_id: str) -> tuple[str, Access, StoredBody] | None:
        """(chat_id, the user's access, row) of the message, None when it is not stored."""
        def run(cur: Any) -> tuple[str, Access, StoredBody] | None:
            cur.execute(SELECT_MESSAGE, (message_id,))
            row = cur.fetchone()
            if row is None:
                return None
            return row["chat_id"], _access(cur, row["chat_id"], user_id)[0], to_row(row)
        return await self.db.transaction(run)

    async def search(self, chat_id: str, user_id: str, terms: Terms, before: int | None,
                     limit: int) -> tuple[Access, list[StoredBody]]:
        """Up to limit + 1 matching messages, newest first (recalled/deleted never match)."""
        def run(cur: Any) -> tuple[Access, list[StoredBody]]:
            access, _ = _access(cur, chat_id, user_id)
            if access is not Access.MEMBER:
                return access, []
            condition, args = search_condition(terms)
            bound = "" if before is None else " AND seq < %s"
            cur.execute(
                f"SELECT {ROW_COLUMNS} FROM history_messages WHERE chat_id = %s AND seq >= %s"
                f"{bound} AND event = 'message' AND text_content IS NOT NULL "
                f"AND state NOT IN ('recalled', 'deleted') AND {condition} "
                "ORDER BY seq DESC LIMIT %s",
                [chat_id, _min_seq(cur, chat_id), *([] if before is None else [before]), *args,
                 limit + 1])
            return access, [to_row(row) for row in cur.fetchall()]
        return await self.db.transaction(run)

    async def trimmable_chats(self, after_chat: str, cutoff_ms: int,
                              limit: int) -> list[tuple[str, int, int]]:
        return await self.db.transaction(lambda cur: trimmable_chats(cur, after_chat, cutoff_ms, limit))

    async def trim_chat(self, chat_id: str, cutoff_ms: int, batch: int) -> int:
        return await self.db.transaction(lambda cur: trim_chat(cur, chat_id, cutoff_ms, batch))

    async def stored_seqs(self, chat_id: str, seqs: Sequence[int]) -> set[int]:
        """Which of these seqs of the chat are stored (hole candidates that were not holes)."""
        rows = await self.db.fetchall(
            f"SELECT seq FROM history_messages WHERE chat_id = %s AND seq IN ({', '.join(['%s'] * len(seqs))})",
            [chat_id, *seqs])
        return {int(row["seq"]) for row in rows}

    async def missing_below(self, chat_id: str, below: int, span: int) -> list[int]:
        """Seqs missing among the ``span`` below ``below`` (not below what retention kept)."""
        def run(cur: Any) -> list[int]:
            low = max(_min_seq(cur, chat_id), below - span)
            cur.execute("SELECT seq FROM history_messages WHERE chat_id = %s AND seq >= %s AND seq < %s",
                        (chat_id, low, below))
            stored = {int(row["seq"]) for row in cur.fetchall()}
            return [seq for seq in range(low, below) if seq not in stored]
        return await self.db.transaction(run)

    async def fulltext_settings(self) -> tuple[int, int, frozenset[str]]:
        """(min token size, max token size, stopwords) of the server's InnoDB FULLTEXT."""
        def run(cur: Any) -> tuple[int, int, frozenset[str]]:
            cur.execute("SELECT @@innodb_ft_min_token_size AS lo, @@innodb_ft_max_token_size AS hi")
            sizes = cur.fetchone()
            cur.execute("SELECT value FROM INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD")
            words = frozenset(str(row["value"]).lower() for row in cur.fetchall())
            return int(sizes["lo"]), int(sizes["hi"]), words
        return await self.db.transaction(run)


def _access(cur: Any, chat_id: str, user_id: str) -> tuple[Access, int | None]:
    cur.execute(SELECT_MEMBER, (chat_id, user_id))
    row = cur.fetchone()
    if row is not None:
        access = Access.MEMBER if row["is_member"] else Access.NOT_MEMBER
        return access, int(row["changed_seq"])
    cur.execute(SELECT_ANY_MEMBER, (chat_id,))
    return (Access.NOT_MEMBER if cur.fetchone() else Access.UNKNOWN_CHAT), None


def _min_seq(cur: Any, chat_id: str) -> int:
    cur.execute(SELECT_MIN_SEQ, (chat_id,))
    row = cur.fetchone()
    return int(row["min_seq"]) if row else 1


def page_sql(plan: PagePlan) -> str:
    """The page SELECT (arguments: chat_id, min_seq, [after], [before], fetch_limit)."""
    where = "chat_id = %s AND seq >= %s"
    if plan.after is not None:
        where += " AND seq > %s"
    if plan.before is not None:
        where += " AND seq < %s"
    order = "DESC" if plan.newest_first else "ASC"
    return f"SELECT {ROW_COLUMNS} FROM history_messages WHERE {where} ORDER BY seq {order} LIMIT %s"


def page_args(chat_id: str, plan: PagePlan, min_seq: int) -> list[Any]:
    bounds = [b for b in (plan.after, plan.before) if b is not None]
    return [chat_id, min_seq, *bounds, plan.fetch_limit]


def _page(cur: Any, chat_id: str, plan: PagePlan, min_seq: int) -> list[StoredBody]:
    cur.execute(page_sql(plan), page_args(chat_id, plan, min_seq))
    return [to_row(row) for row in cur.fetchall()]
