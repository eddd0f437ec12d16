"""Reading the system of record: the rows of ``history_messages`` for some chats.

History writes the event stream to MySQL in batches, moments after the acks; call
``wait_stored`` (or poll ``load_stored`` yourself) before checking a run that just ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import pymysql
import trio

from libs.config import MySQLConfig

from .model import StoredEvent

SELECT = "SELECT body FROM history_messages WHERE chat_id IN ({}) ORDER BY chat_id, seq"


def load_stored(config: MySQLConfig, chat_ids: Iterable[str]) -> list[StoredEvent]:
    """Every stored event of ``chat_ids`` in (chat, seq) order (blocking; see ``fetch_stored``)."""
    chats = sorted(set(chat_ids))
    if not chats:
        return []
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user,
                           password=config.password, database=config.database,
                           charset="utf8mb4", autocommit=True, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute(SELECT.format(", ".join(["%s"] * len(chats))), chats)
            rows = cursor.fetchall()
    finally:
        conn.close()
    return [StoredEvent.from_body(json.loads(body)) for (body,) in rows]


async def fetch_stored(config: MySQLConfig, chat_ids: Iterable[str]) -> list[StoredEvent]:
    """``load_stored`` in a worker thread, for trio tests."""
    chats = list(chat_ids)
    return await trio.to_thread.run_sync(load_stored, config, chats)


async def wait_stored(config: MySQLConfig, last_seqs: Mapping[str, int], timeout: float = 15,
                      interval: float = 0.1) -> list[StoredEvent]:
    """The stored events once every chat holds every seq up to (at least) its given last one.

    On timeout it returns what is stored then, so the check reports what is missing
    instead of a bare timeout.
    """
    with trio.move_on_after(timeout):
        while True:
            try:
                stored = await fetch_stored(config, last_seqs)
            except pymysql.err.OperationalError:  # e.g. 1040 too many connections: a busy
                await trio.sleep(interval)  # server shared with other tests; poll again
                continue
            if _reached(stored, last_seqs):
                return stored
            await trio.sleep(interval)
    return await fetch_stored(config, last_seqs)


def _reached(stored: list[StoredEvent], last_seqs: Mapping[str, int]) -> bool:
    """Every chat holds every seq up to its given last one: stream order is not seq order
    (several routers publish concurrently), so the highest stored seq alone proves nothing."""
    held: dict[str, set[int]] = {}
    for event in stored:
        held.setdefault(event.chat_id, set()).add(event.seq)
    return all(set(range(1, seq + 1)) <= held.get(chat, set()) for chat, seq in last_seqs.items())
