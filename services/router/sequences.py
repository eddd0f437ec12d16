"""Per-chat sequence numbers: Redis counters covered by MySQL high-water marks.

Normal path: ``INCR`` in Redis; a number is handed out only once MySQL's ``seq_hwm``
covers it (reserved a block at a time). The rules that keep ``seq`` dense and never
reused when Redis misbehaves:

* counter missing (flush, restart without persistence): resume above ``seq_hwm`` and report
  the skipped numbers ``(confirmed_seq, seq_hwm]`` as a gap (the caller stores voids for
  them after a grace period; a number that did land is de-duplicated by JetStream);
* Redis down: allocate from MySQL itself (``LAST_INSERT_ID(seq_hwm + 1)``), report the
  skipped rest of the reserved block as a gap, and resync the counter (``SET`` to the
  high-water mark) before the chat uses Redis again;
* MySQL down at a block boundary: hand the number out anyway (the Redis counter is what
  makes it unique) and write the reservation later from the flusher.

Sends do not wait on MySQL: halfway through a block the next one is reserved in the
background, so it is normally in place before it is needed. A send that finds its number
not yet covered waits for that reservation until ``reserve_wait`` seconds after it
started (not at all while the database's circuit breaker is open) and then defers it, as
when MySQL is down: a hung MySQL costs the sends of a chat a quarter of a second once, not
a read timeout each.

``confirmed_seq`` (the highest seq JetStream acknowledged) is flushed in the background.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import redis.exceptions
import trio

from libs import log
from libs.cache import Cache, CacheUnavailable
from libs.db import Database
from libs.errors import Unavailable

from .domain import next_reservation, reservation_due, reservation_needed

logger = log.get("router.seq")
GapReporter = Callable[[str, int, int], None]
Spawner = Callable[..., None]  # nursery.start_soon

# INCR only a counter that exists: a missing one must be resumed, never restarted from 1.
_INCR_EXISTING = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end return false"
# Resume a lost counter at ARGV[1]; the second value says whether this call resumed it.
_RESUME = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {redis.call('INCR', KEYS[1]), 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {redis.call('INCR', KEYS[1]), 1}
"""
# Lift a possibly stale counter to at least ARGV[1] (never lower it), then INCR; returns the
# counter before and the number handed out.
_RESYNC = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return {current, redis.call('INCR', KEYS[1])}
"""


class Sequencer:
    def __init__(self, db: Database, cache: Cache, block: int, reserve_wait: float = 0.25):
        self.db = db
        self.cache = cache
        self.block = block
        self.reserve_wait = reserve_wait
        self.on_gap: GapReporter = lambda chat_id, first, last: None
        # Runs reservations in the background; None (no nursery): sends reserve inline.
        self.spawn: Spawner | None = None
        self._reserving: dict[str, tuple[trio.Event, float]] = {}  # in flight: (done, wait until)
        self._reserved: dict[str, int] = {}     # MySQL's seq_hwm is known to be >= this
        self._stale: set[str] = set()           # allocated from MySQL: resync before INCR
        self._mysql_high: dict[str, int] = {}   # highest number MySQL handed out, per chat
        self._confirmed: dict[str, int] = {}    # PubAck'd, not yet flushed
        self._unreserved: dict[str, int] = {}   # handed out while MySQL was down
        # Taken by MySQL allocations, resumes and resyncs, never by the Redis fast path: a
        # resume or resync must read the high-water mark after every MySQL allocation in
        # flight has committed, and reserve above the number it hands out before MySQL may
        # allocate again.
        self._switching: dict[str, trio.Lock] = {}

        client = cache.client
        self._incr = client.register_script(_INCR_EXISTING)
        self._resume_script = client.register_script(_RESUME)
        self._resync_script = client.register_script(_RESYNC)

    # ---- allocation -----------------------------------------------------------------------
    async def next(self, chat_id: str) -> int:
        """The chat's next seq (dense, never reused)."""
        try:
            seq = await self._from_redis(chat_id)
        except CacheUnavailable:
            logger.warning("router.seq_from_mysql", chat_id=chat_id)
            return await self._from_mysql(chat_id)
        await self._cover(chat_id, seq)
        return seq

    async def _cover(self, chat_id: str, seq: int) -> None:
        """Make MySQL's mark cover ``seq`` (or defer that), reserving ahead in the background."""
        reserved = self._reserved.get(chat_id, 0)
        if self.spawn is None:
            if reservation_needed(seq, reserved):
                await self._reserve(chat_id, seq)
            return
        if reservation_needed(seq, reserved) or reservation_due(seq, reserved, self.block):
            done, give_up_at = self._reserve_ahead(chat_id, max(seq, reserved + 1))
            # MySQL known away: its trial may hang for a read timeout, nothing to wait for.
            if reservation_needed(seq, self._reserved.get(chat_id, 0)) and not self.db.breaker.is_open:
                with trio.move_on_at(give_up_at):
                    await done.wait()
        if reservation_needed(seq, self._reserved.get(chat_id, 0)):
            logger.warning("router.seq_reservation_deferred", chat_id=chat_id, seq=seq)
            self._unreserved[chat_id] = max(self._unreserved.get(chat_id, 0), seq)

    def _reserve_ahead(self, chat_id: str, seq: int) -> tuple[trio.Event, float]:
        """The background reservation of the block from ``seq`` (one per chat at a time):
        its end, and until when sends wait for it (together, not ``reserve_wait`` each)."""
        if (running := self._reserving.get(chat_id)) is not None:
            return running
        done = trio.Event()
        self._reserving[chat_id] = done, trio.current_time() + self.reserve_wait

        async def run() -> None:
            try:
                await self._reserve(chat_id, seq, quiet=True)
            except Exception as exc:  # noqa: BLE001 - a background task must not end the router
                logger.warning("router.seq_reservation_failed", chat_id=chat_id, error=repr(exc))
            finally:
                del self._reserving[chat_id]
                done.set()
        assert self.spawn is not None
        self.spawn(run)
        return self._reserving[chat_id]

    async def _from_redis(self, chat_id: str) -> int:
        key = self.cache.keys.seq(chat_id)
        if chat_id in self._stale:
            resynced = await self._resync(chat_id, key, only_stale=True)
            if resynced is not None:
                return resynced
        seq = await self._incr_existing(key)
        if seq is None:
            return await self._resume(chat_id, key)
        if int(seq) <= self._mysql_high.get(chat_id, 0):
            # The counter is behind numbers MySQL already handed out (another path reset it).
            resynced = await self._resync(chat_id, key)
            assert resynced is not None  # only_stale=False always resyncs
            return resynced
        return int(seq)

    async def _incr_existing(self, key: str) -> Any:
        """INCR the counter if it exists (else None), sharing a round trip with concurrent
        sends; by its hash (no per-batch SCRIPT EXISTS), loaded on NOSCRIPT."""
        try:
            (seq,) = await self.cache.batched(lambda pipe: pipe.evalsha(self._incr.sha, 1, key))
        except redis.exceptions.NoScriptError:
            seq = await self.cache.run(lambda r: self._incr(keys=[key], client=r))
        return seq

    async def _resume(self, chat_id: str, key: str) -> int:
        """Redis lost the counter: continue above every number that could have been issued
        (under the chat's lock: the mark must include every MySQL allocation in flight)."""
        async with self._switch_lock(chat_id):
            return await self._resume_locked(chat_id, key)

    async def _resume_locked(self, chat_id: str, key: str) -> int:
        await self.flush()
        row = await self._marks(chat_id)
        hwm = row["seq_hwm"]
        seq, resumed = await self.cache.run(
            lambda r: self._resume_script(keys=[key], args=[hwm], client=r))
        if resumed:
            first = max(row["confirmed_seq"], self._confirmed.get(chat_id, 0)) + 1
            logger.warning("router.seq_counter_resumed", chat_id=chat_id, above=hwm, gap_from=first)
            if first <= hwm:
                self.on_gap(chat_id, first, hwm)
        return int(seq)

    async def _resync(self, chat_id: str, key: str, only_stale: bool = False) -> int | None:
        """Lift the counter above MySQL's mark and INCR; None when ``only_stale`` and another
        send resynced the chat while this one waited (the counter is live: just INCR)."""
        async with self._switch_lock(chat_id):
            if only_stale and chat_id not in self._stale:
                return None
            hwm = (await self._marks(chat_id))["seq_hwm"]
            before, seq = await self.cache.run(
                lambda r: self._resync_script(keys=[key], args=[hwm], client=r))
            # Numbers the lift skips that neither the counter nor MySQL (here) handed out:
            # the unissued rest of a reserved block. They become voids like any other gap.
            first = max(int(before), self._mysql_high.get(chat_id, 0)) + 1
            if first <= hwm:
                self.on_gap(chat_id, first, hwm)
            seq = int(seq)
            if reservation_needed(seq, self._reserved.get(chat_id, 0)):
                await self._reserve(chat_id, seq)
            self._stale.discard(chat_id)
        logger.info("router.seq_counter_resynced", chat_id=chat_id, above=hwm)
        return seq

    def _switch_lock(self, chat_id: str) -> trio.Lock:
        return self._switching.setdefault(chat_id, trio.Lock())

    async def _from_mysql(self, chat_id: str) -> int:
        """Redis is down: the high-water mark itself is the counter (one row update)."""
        async with self._switch_lock(chat_id):
            return await self._from_mysql_locked(chat_id)

    async def _from_mysql_locked(self, chat_id: str) -> int:
        def run(cur: Any) -> tuple[int, int] | None:
            if not cur.execute("UPDATE router_conversations SET seq_hwm = LAST_INSERT_ID(seq_hwm + 1)"
                               " WHERE chat_id = %s", (chat_id,)):
                return None
            cur.execute("SELECT LAST_INSERT_ID() AS n, confirmed_seq FROM router_conversations"
                        " WHERE chat_id = %s", (chat_id,))
            row = cur.fetchone()
            return int(row["n"]), int(row["confirmed_seq"])
        got = await self.db.transaction(run, retry=False)
        if got is None:
            raise Unavailable("chat has no sequence row")
        seq, confirmed = got
        if chat_id not in self._stale:
            # First number from MySQL: the rest of the block Redis was using is skipped.
            first = max(confirmed, self._confirmed.get(chat_id, 0)) + 1
            if first <= seq - 1:
                self.on_gap(chat_id, first, seq - 1)
        self._stale.add(chat_id)
        self._mysql_high[chat_id] = max(self._mysql_high.get(chat_id, 0), seq)
        self._reserved[chat_id] = max(self._reserved.get(chat_id, 0), seq)
        return seq

    async def _reserve(self, chat_id: str, seq: int, quiet: bool = False) -> None:
        """Reserve the block from ``seq``; when MySQL is away, defer ``seq`` itself (unless
        ``quiet``: a reservation ahead of need hands nothing out, the send defers its own)."""
        upto = next_reservation(seq, self.block)
        try:
            await self.db.execute(
                "UPDATE router_conversations SET seq_hwm = GREATEST(seq_hwm, %s) WHERE chat_id = %s",
                (upto, chat_id))
        except Unavailable:
            if quiet:
                return
            # The Redis counter keeps the number unique; the mark is written when MySQL is back.
            logger.warning("router.seq_reservation_deferred", chat_id=chat_id, seq=seq)
            self._unreserved[chat_id] = max(self._unreserved.get(chat_id, 0), seq)
            return
        self._reserved[chat_id] = max(self._reserved.get(chat_id, 0), upto)

    async def _marks(self, chat_id: str) -> dict[str, int]:
        row = await self.db.fetchone(
            "SELECT seq_hwm, confirmed_seq FROM router_conversations WHERE chat_id = %s", (chat_id,))
        if row is None:
            return {"seq_hwm": 0, "confirmed_seq": 0}
        return {"seq_hwm": int(row["seq_hwm"]), "confirmed_seq": int(row["confirmed_seq"])}

    # ---- chat creation and reads ----------------------------------------------------------
    async def chat_created(self, chat_id: str) -> None:
        """seq 1 is the created event (MySQL's mark starts at 1); the counter starts there."""
        self._reserved[chat_id] = 1
        try:
            await self.cache.run(lambda r: r.set(self.cache.keys.seq(chat_id), 1, nx=True))
        except CacheUnavailable:
            self._stale.add(chat_id)

    async def last_seq(self, chat_id: str, confirmed: int = 0) -> int:
        """Highest seq allocated (Redis), never below what is known to be stored."""
        floor = max(confirmed, self._confirmed.get(chat_id, 0), self._mysql_high.get(chat_id, 0))
        try:
            value = await self.cache.run(lambda r: r.get(self.cache.keys.seq(chat_id)))
        except CacheUnavailable:
            return floor
        return floor if chat_id in self._stale else max(int(value or 0), floor)

    # ---- confirmations ----------------------------------------------------------------------
    def confirm(self, chat_id: str, seq: int) -> None:
        """JetStream acknowledged the event at ``seq``."""
        if seq > self._confirmed.get(chat_id, 0):
            self._confirmed[chat_id] = seq

    async def flush(self) -> None:
        """Write confirmed seqs and deferred reservations (GREATEST: never backwards)."""
        if not self._confirmed and not self._unreserved:
            return
        confirmed, self._confirmed = self._confirmed, {}
        unreserved, self._unreserved = self._unreserved, {}
        rows = [(confirmed.get(c, 0), unreserved.get(c, 0), c) for c in sorted({*confirmed, *unreserved})]
        try:
            await self.db.executemany(
                "UPDATE router_conversations SET confirmed_seq = GREATEST(confirmed_seq, %s),"
                " seq_hwm = GREATEST(seq_hwm, %s) WHERE chat_id = %s", rows)
        except Unavailable:
            for chat_id, seq in confirmed.items():
                self.confirm(chat_id, seq)
            for chat_id, seq in unreserved.items():
                self._unreserved[chat_id] = max(self._unreserved.get(chat_id, 0), seq)
            raise

    async def run_flusher(self, interval: float, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(interval)
                with contextlib.suppress(Unavailable):
                    await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2), contextlib.suppress(Unavailable):
                await self.flush()
