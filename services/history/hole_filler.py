"""history's hole filler: seqs nobody will ever store are reported to the router, which
voids them (``im.router.holes``). The rules are in ``holes.py``; this is the I/O.

Every committed batch feeds the tracker. Once a tick (``NJ_HISTORY_HOLE_CHECK_S``) the
filler looks in MySQL below chats first seen since the start (bounded by
``NJ_HISTORY_HOLE_SCAN``), re-reads candidates whose time has come (another replica may
have stored them) and reports the rest. A reported seq stays a candidate until its void
is stored, so a router that died before storing it is asked again ``hole_after`` later.
"""

from __future__ import annotations

from typing import Any

import trio

from libs import log, metrics, rpc
from libs.bus import Bus
from libs.errors import NatterjackError

from .holes import HoleTracker
from .storage import HistoryStorage, WriteResult

logger = log.get("history.holes")
SUBJECT = "im.router.holes"
SCANS_PER_TICK = 50  # chats looked at below their first seen seq, per tick
CHECKS_PER_TICK = 1000  # candidates re-read per tick (the router takes at most 1000 per request)


class HoleFiller:
    def __init__(self, tracker: HoleTracker, storage: HistoryStorage, bus: Bus, *,
                 check_s: float, scan: int, timeout: float):
        self.tracker = tracker
        self.storage = storage
        self.bus = bus
        self.check_s = check_s
        self.scan = scan
        self.timeout = timeout
        self._dropped = 0

    def observe(self, result: WriteResult) -> None:
        """A batch is committed: every row it wrote (or found) is stored."""
        now = trio.current_time()
        for chat in result.chats:
            for row in chat.rows:
                self.tracker.observe(chat.chat_id, row.seq, now)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.check_s)
            try:
                await self.tick()
            except Exception as exc:  # MySQL or the bus away: the candidates wait for the next tick
                logger.warning("history.holes_check_failed", error=repr(exc))

    async def tick(self) -> None:
        await self._scan()
        await self._check()
        if self.tracker.dropped > self._dropped:
            logger.error("history.holes_untracked", count=self.tracker.dropped - self._dropped)
            self._dropped = self.tracker.dropped

    async def _scan(self) -> None:
        for chat_id, first_seen in self.tracker.to_scan(SCANS_PER_TICK):
            if not self.scan:
                continue
            missing = await self.storage.missing_below(chat_id, first_seen, self.scan)
            self.tracker.restore(chat_id, missing, trio.current_time())

    async def _check(self) -> None:
        now = trio.current_time()
        for chat_id, seqs in self.tracker.due(now, CHECKS_PER_TICK).items():
            stored = await self.storage.stored_seqs(chat_id, seqs)
            self.tracker.stored(chat_id, stored)
            holes = [seq for seq in seqs if seq not in stored]
            self.tracker.retry(chat_id, holes, now)
            if holes:
                await self._report(chat_id, holes)

    async def _report(self, chat_id: str, holes: list[int]) -> None:
        logger.warning("history.holes_found", chat_id=chat_id, seqs=holes[:20], count=len(holes))
        metrics.HISTORY_HOLES.inc(len(holes))
        ask: dict[str, Any] = {"chat_id": chat_id, "seqs": holes}
        try:
            await rpc.call(self.bus, SUBJECT, ask, timeout=self.timeout)
        except NatterjackError as exc:  # asked again after hole_after
            logger.warning("history.holes_not_reported", chat_id=chat_id, code=exc.code, error=exc.message)
