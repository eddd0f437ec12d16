"""Retention: delete events older than NJ_HISTORY_RETENTION_DAYS, a bounded batch at a time.

A sweep walks the chats in id order, a page of chats at a time, picking only those whose
oldest retained event is too old; for each it raises ``history_chats.min_seq`` and deletes
the events below it, at most ``batch`` per transaction (repeated while a full batch goes), never the chat's newest event.
Pages below ``min_seq`` answer empty with ``retained_from_seq``. The chat's cached events
are dropped afterwards so the cache never serves a deleted event.
"""

from __future__ import annotations

import trio

from libs import log
from libs.ids import now_ms

from .recent import RecentCache
from .storage import HistoryStorage

logger = log.get("history.retention")
CHATS_PER_QUERY = 100
DAY_MS = 86_400_000


async def sweep(storage: HistoryStorage, recent: RecentCache | None, days: int, batch: int) -> int:
    """One pass over every chat; returns how many chats were trimmed."""
    cutoff, after, trimmed = now_ms() - days * DAY_MS, "", 0
    while True:
        chats = await storage.trimmable_chats(after, cutoff, CHATS_PER_QUERY)
        for chat_id, min_seq, _ in chats:
            while (new_min := await storage.trim_chat(chat_id, cutoff, batch)) - min_seq >= batch:
                min_seq = new_min  # a full batch went: there may be more
            trimmed += 1
        if recent is not None and chats:
            try:
                await recent.invalidate(chat_id for chat_id, _, _ in chats)
            except Exception as exc:  # a later write or refill finds them dirty
                recent.dirty.update(chat_id for chat_id, _, _ in chats)
                logger.warning("history.retention_invalidate_failed", error=repr(exc))
        if len(chats) < CHATS_PER_QUERY:
            return trimmed
        after = chats[-1][0]


async def run(storage: HistoryStorage, recent: RecentCache | None, *, days: int, batch: int,
              interval_s: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Sweep every ``interval_s``; failures are logged and retried on the next sweep."""
    task_status.started()
    while True:
        try:
            trimmed = await sweep(storage, recent, days, batch)
            if trimmed:
                logger.info("history.retention_swept", chats=trimmed)
        except Exception as exc:
            logger.warning("history.retention_failed", error=repr(exc))
        await trio.sleep(interval_s)
