"""delivery-retry's MySQL I/O for the redelivery schedule, failures and status reads.

Due rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (their due time pushed
ahead) in one short transaction, then worked on outside it: replicas never take the same
row, and a replica that dies mid-way leaves rows that fall due again when the lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.db import Database

from . import claims
from .claims import Check, Due, Retry
from .retries import EventRef

__all__ = ["Check", "DeliveryFacts", "Due", "Retry", "ScheduleStorage"]

EVENT_COLUMNS = "seq, kind, message_id, sender_id, sender_device_id, ts"
UPSERT_RETRY = (
    "INSERT INTO dlv_retries (user_id, device_id, chat_id, gateway_id, target_seq, attempts, "
    "next_attempt_ts) VALUES (%s, %s, %s, %s, %s, 1, %s) ON DUPLICATE KEY UPDATE "
    "target_seq = GREATEST(target_seq, VALUES(target_seq)), gateway_id = VALUES(gateway_id)")
INSERT_FAILURE = (
    "INSERT INTO dlv_failures (chat_id, seq, user_id, device_id, attempts, failed_ts) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE attempts = VALUES(attempts), "
    "failed_ts = VALUES(failed_ts)")


def event_ref(row: dict[str, Any]) -> EventRef:
    return EventRef(int(row["seq"]), row["kind"], row["message_id"], row["sender_id"],
                    row["sender_device_id"], int(row["ts"]))


class ScheduleStorage:
    def __init__(self, db: Database):
        self.db = db

    # ---- claiming due rows ------------------------------------------------------------
    async def claim_checks(self, now_ms: int, lease_ms: int, limit: int) -> list[Check]:
        rows = await self._claim("dlv_checks", "chat_id, check_seq", "due_ts", ("chat_id",),
                                 now_ms, lease_ms, limit)
        return [Check(r["chat_id"], int(r["check_seq"])) for r in rows]

    async def claim_retries(self, now_ms: int, lease_ms: int, limit: int) -> list[Retry]:
        rows = await self._claim(
            "dlv_retries", "user_id, device_id, chat_id, gateway_id, target_seq, attempts",
            "next_attempt_ts", ("user_id", "device_id", "chat_id"), now_ms, lease_ms, limit)
        return [Retry(r["user_id"], r["device_id"], r["chat_id"], r["gateway_id"],
                      int(r["target_seq"]), int(r["attempts"])) for r in rows]

    async def _claim(self, table: str, columns: str, due: str, key: tuple[str, ...],
                     now_ms: int, lease_ms: int, limit: int) -> list[dict[str, Any]]:
        return await self.db.transaction(
            lambda cur: claims.claim(cur, table, columns, due, key, now_ms, lease_ms, limit))

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> Due:
        """Due looks and retries with what working them needs, in one transaction."""
        return await self.db.transaction(
            lambda cur: claims.claim_due(cur, now_ms, lease_ms, limit))

    # ---- checks ------------------------------------------------------------------------
    async def finish_check(self, check: Check, retries: Sequence[tuple[str, str, str, int]],
                           now_ms: int, next_delay_ms: int) -> None:
        await self.finish_checks([(check, retries)], now_ms, next_delay_ms)

    async def finish_checks(self, done: Sequence[tuple[Check, Sequence[tuple[str, str, str, int]]]],
                            now_ms: int, next_delay_ms: int) -> None:
        """Start (or extend) the devices' schedules and move each chat's look to the newest
        seq seen meanwhile, or drop it when there is none; all in one transaction, rows in
        key order (concurrent transactions lock them in the same order)."""
        rows = sorted((u, d, check.chat_id, gw, target, now_ms)
                      for check, retries in done for u, d, gw, target in retries)
        looked = sorted(((c.chat_id, c.check_seq) for c, _ in done))

        def run(cur: Any) -> None:
            if rows:
                cur.executemany(UPSERT_RETRY, rows)
            for chat_id, seq in looked:
                cur.execute("UPDATE dlv_checks SET check_seq = next_seq, due_ts = %s "
                            "WHERE chat_id = %s AND next_seq > %s",
                            (now_ms + next_delay_ms, chat_id, seq))
                cur.execute("DELETE FROM dlv_checks WHERE chat_id = %s AND next_seq <= %s",
                            (chat_id, seq))
        await self.db.transaction(run)

    # ---- retries -----------------------------------------------------------------------
    async def needed_up_to(self, retry: Retry, cursor: int) -> int:
        return await self.db.transaction(lambda cur: claims.needed_up_to(cur, retry, cursor))

    async def messages_between(self, chat_id: str, after: int, up_to: int, limit: int
                               ) -> list[EventRef]:
        rows = await self.db.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM dlv_events WHERE chat_id = %s AND kind = 'message' "
            f"AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s", (chat_id, after, up_to, limit))
        return [event_ref(r) for r in rows]

    async def end_retry(self, retry: Retry, due_ms: int) -> None:
        """Drop the schedule; if newer events extended its target meanwhile, start it over
        for those (first send already made by the live push) at ``due_ms``."""
        def run(cur: Any) -> None:
            key = retry.key
            if not cur.execute("DELETE FROM dlv_retries WHERE user_id = %s AND device_id = %s "
                               "AND chat_id = %s AND target_seq <= %s", (*key, retry.target_seq)):
                cur.execute("UPDATE dlv_retries SET attempts = 1, next_attempt_ts = %s WHERE "
                            "user_id = %s AND device_id = %s AND chat_id = %s", (due_ms, *key))
        await self.db.transaction(run)

    async def drop_retry(self, retry: Retry) -> None:
        await self.db.execute("DELETE FROM dlv_retries WHERE user_id = %s AND device_id = %s "
                              "AND chat_id = %s", retry.key)

    async def next_attempt(self, retry: Retry, gateway_id: str, due_ms: int) -> None:
        await self.db.execute(
            "UPDATE dlv_retries SET attempts = attempts + 1, gateway_id = %s, next_attempt_ts = %s "
            "WHERE user_id = %s AND device_id = %s AND chat_id = %s", (gateway_id, due_ms, *retry.key))

    async def postpone(self, retry: Retry, due_ms: int) -> None:
        await self.db.execute(
            "UPDATE dlv_retries SET next_attempt_ts = %s WHERE user_id = %s AND device_id = %s "
            "AND chat_id = %s", (due_ms, *retry.key))

    async def fail(self, retry: Retry, failed: Sequence[EventRef], now_ms: int) -> None:
        """Record the given-up messages and end the schedule, in one transaction."""
        def run(cur: Any) -> None:
            if failed:
                cur.executemany(INSERT_FAILURE, [(retry.chat_id, e.seq, retry.user_id, retry.device_id,
                                                  retry.attempts, now_ms) for e in failed])
            cur.execute("DELETE FROM dlv_retries WHERE user_id = %s AND device_id = %s AND chat_id = %s",
                        retry.key)
        await self.db.transaction(run)

    # ---- status reads ----------------------------------------------------------------
    async def message(self, message_id: str) -> tuple[str, EventRef] | None:
        row = await self.db.fetchone(
            f"SELECT chat_id, {EVENT_COLUMNS} FROM dlv_events WHERE message_id = %s", (message_id,))
        return (row["chat_id"], event_ref(row)) if row else None

    async def is_member(self, chat_id: str, user_id: str) -> bool:
        row = await self.db.fetchone("SELECT active FROM dlv_members WHERE chat_id = %s AND user_id = %s",
                                     (chat_id, user_id))
        return bool(row and row["active"])

    async def recipients(self, chat_id: str, seq: int) -> list[str]:
        """Current members who were already members when ``seq`` was stored."""
        rows = await self.db.fetchall(
            "SELECT user_id FROM dlv_members WHERE chat_id = %s AND active = 1 AND member_seq < %s "
            "ORDER BY user_id", (chat_id, seq))
        return [r["user_id"] for r in rows]

    async def delivery_facts(self, chat_id: str, seq: int) -> DeliveryFacts:
        """Cursors, failure rows and running schedules of every device in the chat."""
        def run(cur: Any) -> DeliveryFacts:
            cur.execute("SELECT user_id, device_id, acked_seq, updated_ts FROM dlv_cursors "
                        "WHERE chat_id = %s", (chat_id,))
            cursors = {(r["user_id"], r["device_id"]): (int(r["acked_seq"]), int(r["updated_ts"]))
                       for r in cur.fetchall()}
            cur.execute("SELECT user_id, device_id, attempts, failed_ts FROM dlv_failures "
                        "WHERE chat_id = %s AND seq = %s", (chat_id, seq))
            failures = {(r["user_id"], r["device_id"]): (int(r["attempts"]), int(r["failed_ts"]))
                        for r in cur.fetchall()}
            cur.execute("SELECT user_id, device_id, attempts FROM dlv_retries "
                        "WHERE chat_id = %s AND target_seq >= %s", (chat_id, seq))
            running = {(r["user_id"], r["device_id"]): int(r["attempts"]) for r in cur.fetchall()}
            return DeliveryFacts(cursors, failures, running)
        return await self.db.transaction(run)


@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    cursors: dict[tuple[str, str], tuple[int, int]]  # (acked_seq, updated_ts)
    failures: dict[tuple[str, str], tuple[int, int]]  # (attempts, failed_ts)
    retries: dict[tuple[str, str], int]  # attempts so far
