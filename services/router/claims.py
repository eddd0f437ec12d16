"""Durable send claims: the router's ``router_send_claims`` table, the truth of send
de-duplication (Redis holds the same claims as a fast cache, see dedup.py).

Every send claims its (sender, client id) here before a seq is allocated. The writes are
group-committed (:mod:`libs.groupcommit`): the claims of concurrent sends go in one
multi-row ``INSERT IGNORE`` and one transaction, which the sends wait for; the acks and
releases are write-behind (nobody waits), drained on a graceful shutdown.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

import trio

from libs import ids, log
from libs.db import Database
from libs.errors import Unavailable
from libs.groupcommit import GroupCommit

from . import domain

logger = log.get("router.claims")
Key = tuple[str, str]
_COLUMNS = "sender_id, client_msg_id, chat_id, message_id, seq, ts, acked, created_ts"
# A claim carries the seq and ts its send was numbered with, so whoever takes over a stale
# claim can tell whether that number was stored (see takeover.py) instead of renumbering.
_CLAIM = ("INSERT IGNORE INTO router_send_claims (sender_id, client_msg_id, chat_id, message_id,"
          " seq, ts, created_ts) VALUES (%s, %s, %s, %s, %s, %s, %s)")
_TAKE_OVER = ("UPDATE router_send_claims SET message_id = %s, chat_id = %s, seq = %s, ts = %s,"
              " created_ts = %s"
              " WHERE sender_id = %s AND client_msg_id = %s AND message_id = %s AND acked = 0")
# A stale claim is leased (its clock restarted, its send kept) while one resend settles it.
_LEASE = ("UPDATE router_send_claims SET created_ts = %s"
          " WHERE sender_id = %s AND client_msg_id = %s AND message_id = %s AND acked = 0")
# An ack upserts: a send that could not claim here (MySQL away) is still recorded once it
# is back. A row of another claimant (a takeover) is left as it is.
_RECORD = (f"INSERT INTO router_send_claims ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
           " ON DUPLICATE KEY UPDATE seq = IF(message_id = VALUES(message_id), VALUES(seq), seq),"
           " ts = IF(message_id = VALUES(message_id), VALUES(ts), ts),"
           " acked = IF(message_id = VALUES(message_id), 1, acked)")
_RELEASE = ("DELETE FROM router_send_claims"
            " WHERE sender_id = %s AND client_msg_id = %s AND message_id = %s AND acked = 0")
_PURGE = "DELETE FROM router_send_claims WHERE created_ts < %s ORDER BY created_ts LIMIT %s"
RETRY_MAX_S = 5.0
WRITE_BEHIND_WINDOW_S = 0.05


@dataclass(frozen=True)
class Ask:
    sender_id: str
    client_msg_id: str
    chat_id: str
    token: str  # the message id this send publishes under
    seq: int = 0  # 0 until numbered
    ts: int = 0

    @property
    def key(self) -> Key:
        return self.sender_id, self.client_msg_id


class DurableClaims:
    def __init__(self, db: Database, *, pending_s: int, wait_s: float, max_batch: int):
        self.db = db
        self.pending_ms = pending_s * 1000
        self.wait_s = wait_s  # longest a send waits for its claim before going on without
        self.claims = GroupCommit[Ask]("router.claims", self._write_claims, max_batch=max_batch)
        # Nobody waits for these: a short window makes their batches (and commits) fewer.
        self.acks = GroupCommit[tuple[Any, ...]]("router.claim_acks", self._write_acks,
                                                 max_batch=max_batch, window_s=WRITE_BEHIND_WINDOW_S)
        self.releases = GroupCommit[tuple[str, str, str]](
            "router.claim_releases", self._write_releases, max_batch=max_batch,
            window_s=WRITE_BEHIND_WINDOW_S)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for writer in (self.claims, self.acks, self.releases):
                await nursery.start(writer.run)
            task_status.started()

    async def claim(self, ask: Ask) -> tuple[str, dict[str, Any] | None]:
        """(verdict, the claim's ack): the original ack when ACKED; when STALE, the ack the
        dead claimant's send would have had (now leased to this caller to settle, see
        takeover.py). Unavailable when MySQL does not answer in time."""
        if self.claims.stuck_for() > self.wait_s:  # MySQL hangs: do not queue behind it
            raise Unavailable("send claims: MySQL does not answer")
        with trio.move_on_after(self.wait_s):
            verdict: tuple[str, dict[str, Any] | None] = await self.claims.submit(ask)
            return verdict
        raise Unavailable("send claims: MySQL did not answer in time")

    def record(self, ask: Ask, ack: dict[str, Any]) -> None:
        row = (*ask.key, ask.chat_id, ask.token, ack["seq"], ack["ts"], 1, ids.now_ms())
        if not self.acks.put_nowait(row):
            logger.warning("router.dedup_ack_dropped", client_msg_id=ask.client_msg_id)

    async def take_over(self, ask: Ask, holder: str) -> bool:
        """Make a leased stale claim this send's (its number proved unused); False: lost it."""
        args = (ask.token, ask.chat_id, ask.seq, ask.ts, ids.now_ms(), *ask.key, holder)
        return bool(await self.db.execute(_TAKE_OVER, args))

    async def unlease(self, ask: Ask, holder: str) -> None:
        """Settling failed: the claim is stale again at once, for the next resend to settle."""
        args = (ids.now_ms() - self.pending_ms, *ask.key, holder)
        await self.db.execute(_LEASE, args)

    def release(self, ask: Ask) -> None:
        if not self.releases.put_nowait((*ask.key, ask.token)):
            logger.warning("router.dedup_release_dropped", client_msg_id=ask.client_msg_id)

    async def drain(self) -> None:
        """Write every queued ack and release (a graceful shutdown loses none)."""
        for writer in (self.claims, self.acks, self.releases):
            await writer.close()

    # ---- the writes ------------------------------------------------------------------------
    async def _write_claims(self, asks: list[Ask]) -> list[tuple[str, dict[str, Any] | None]]:
        now = ids.now_ms()

        def run(cur: Any) -> list[tuple[str, dict[str, Any] | None]]:
            # Sorted rows: two routers' batches lock shared keys in the same order.
            inserted = cur.executemany(_CLAIM, sorted((*a.key, a.chat_id, a.token, a.seq or None,
                                                        a.ts or None, now) for a in asks))
            if inserted == len(asks):  # the usual case: every id new, every claim ours
                return [(domain.OURS, None)] * len(asks)
            rows = _locked_rows(cur, {a.key for a in asks})
            return [self._decide(cur, rows, ask, now) for ask in asks]
        return await self.db.transaction(run)

    def _decide(self, cur: Any, rows: dict[Key, domain.ClaimRow], ask: Ask, now: int
                ) -> tuple[str, dict[str, Any] | None]:
        row = rows.get(ask.key)
        if row is None:  # released meanwhile by its claimant: retry with the same id
            return domain.IN_PROGRESS, None
        verdict = domain.claim_verdict(row, ask.token, now, self.pending_ms)
        if verdict != domain.STALE:
            return verdict, domain.claim_ack(row) if verdict == domain.ACKED else None
        # Its router died mid-send. Compare-and-set on its token: one resend gets the row.
        if row.seq is None:  # numbered nothing (a claim from before seqs were recorded)
            taken = cur.execute(_TAKE_OVER, (ask.token, ask.chat_id, ask.seq or None, ask.ts or None,
                                             now, *ask.key, row.message_id))
            rows[ask.key] = replace(row, message_id=ask.token, created_ts=now)
            return (domain.OURS if taken else domain.IN_PROGRESS), None
        if not cur.execute(_LEASE, (now, *ask.key, row.message_id)):
            return domain.IN_PROGRESS, None
        rows[ask.key] = replace(row, created_ts=now)  # a second ask of the batch: in progress
        return domain.STALE, domain.claim_ack(row)

    async def _write_acks(self, rows: list[tuple[Any, ...]]) -> list[None]:
        await self._keep_trying("router.dedup_acks_not_stored", _RECORD, rows)
        return [None] * len(rows)

    async def _write_releases(self, keys: list[tuple[str, str, str]]) -> list[None]:
        await self._keep_trying("router.dedup_releases_not_stored", _RELEASE, keys)
        return [None] * len(keys)

    async def _keep_trying(self, event: str, sql: str, rows: list[Any]) -> None:
        """Write-behind: retry while MySQL is away (bounded by the queue and the shutdown
        deadline); an answer refusing the write drops it."""
        delay = 0.1
        while True:
            try:
                await self.db.executemany(sql, rows)
                return
            except Unavailable:
                logger.warning(event, count=len(rows), retry_in=delay)
            except Exception:
                logger.exception(event, count=len(rows))
                return
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    # ---- cleanup -------------------------------------------------------------------------
    async def purge(self, ttl_s: int, batch: int) -> int:
        """Delete claims older than the dedup window, ``batch`` rows per statement."""
        cutoff, total = ids.now_ms() - ttl_s * 1000, 0
        while True:
            deleted = await self.db.execute(_PURGE, (cutoff, batch))
            total += deleted
            if deleted < batch:
                return total

    async def run_cleanup(self, ttl_s: int, interval_s: float, batch: int, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(interval_s)
            with contextlib.suppress(Unavailable):
                if deleted := await self.purge(ttl_s, batch):
                    logger.info("router.dedup_purged", rows=deleted)


def _locked_rows(cur: Any, keys: set[Key]) -> dict[Key, domain.ClaimRow]:
    where = " OR ".join(["(sender_id = %s AND client_msg_id = %s)"] * len(keys))
    cur.execute(f"SELECT {_COLUMNS} FROM router_send_claims WHERE {where} FOR UPDATE",
                [part for key in sorted(keys) for part in key])
    return {(r["sender_id"], r["client_msg_id"]): domain.ClaimRow(
        r["chat_id"], r["message_id"], r["seq"], r["ts"], bool(r["acked"]), int(r["created_ts"]))
        for r in cur.fetchall()}
