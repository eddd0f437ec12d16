"""The redelivery scheduler: looks at chats with new events, resends to devices that stay
behind, and fails deliveries after the last attempt (rules: :mod:`.retries`).

JetStream's consumer backoff redelivers one stream message to one consumer; it cannot
say "device D of user U has not acked chat C". So the schedule is ours, in MySQL (durable
across restarts, shared by replicas): a ``dlv_checks`` row per chat with fresh events
and a ``dlv_retries`` row per (device, chat) that stays behind. One task scans both, in
rounds of one claim transaction (:mod:`.claims`), resting until the next due row
(:mod:`.pause`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client import Counter

from libs import events, ids, log, rpc
from libs.bus import Bus
from libs.cache import CacheUnavailable
from libs.errors import FORBIDDEN, NatterjackError

from . import pause, retries
from .claims import Attempt, Look, Retry
from .outbox import Outbox
from .pause import Alarm
from .retries import Step
from .schedule_storage import ScheduleStorage

logger = log.get("delivery_retry.scheduler")
RETRY_STEPS = Counter("nj_dlv_retry_steps_total", "Redelivery schedule steps taken", ["step"])


@dataclass(frozen=True)
class Schedule:
    backoff_s: tuple[float, ...]
    max_attempts: int
    scan_interval_s: float = 0.1  # the shortest pause between two scans that found nothing
    idle_scan_s: float = 2.0  # the longest: finds rows a dead replica's projector scheduled
    max_resend: int = 500  # events per resend at most; the rest follows the next ack
    batch: int = 100
    request_timeout: float = 5.0
    lease_s: float = 30.0  # a claimed row falls due again after this if its replica died
    concurrency: int = 4  # looks and retries worked at once (each holds a DB connection)

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    def delay_ms(self, attempts: int) -> int:
        return int(retries.delay_after(attempts, self.backoff_s) * 1000)


class Scheduler:
    def __init__(self, store: ScheduleStorage, outbox: Outbox, bus: Bus, schedule: Schedule):
        self.store = store
        self.outbox = outbox
        self.bus = bus
        self.schedule = schedule
        self._stop = trio.Event()
        self._alarm = Alarm()
        self._next_due_ms: int | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = self.schedule.scan_interval_s
        while not self._stop.is_set():
            started = trio.current_time()
            self._alarm.forget()
            try:
                busy = await self.scan_once()
                backoff = self.schedule.scan_interval_s
                wake = trio.current_time() + pause.MARGIN_S + pause.until_next_scan(
                    self._next_due_ms, ids.now_ms(), self.schedule.idle_scan_s)
            except Exception as exc:  # MySQL away: back off, never exit
                logger.warning("dlv.scan_failed", error=repr(exc), retry_in=backoff)
                busy, wake = 0, started + backoff
                backoff = min(backoff * 2, 5.0)
            if not busy and not self._stop.is_set():
                await self._alarm.sleep_until(wake, earliest=started + self.schedule.scan_interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._alarm.ring()

    def due_by(self, due_ms: int) -> None:
        """Something new falls due at ``due_ms`` (wall clock): scan then at the latest."""
        self._alarm.bring_forward(trio.current_time() + pause.MARGIN_S
                                  + max(0, due_ms - ids.now_ms()) / 1000)

    async def scan_once(self) -> int:
        """Work every due look and retry once; returns how many there were."""
        due = await self.store.claim_due(ids.now_ms(), self.schedule.lease_ms, self.schedule.batch)
        self._next_due_ms = due.next_due_ms
        if due.looks:
            await self.look_all(due.looks)
        if due.attempts:
            await self.attempt_all(due.attempts)
        return len(due.looks) + len(due.attempts)

    async def _each(self, fn: Any, items: list[Any]) -> None:
        """``fn`` over the claimed items, several at once: each is a few round trips to
        MySQL and Redis, and one after another would let a busy minute fall behind."""
        limiter = trio.CapacityLimiter(self.schedule.concurrency)

        async def one(item: Any) -> None:
            async with limiter:
                try:
                    await fn(item)
                except NatterjackError as exc:  # the lease makes it due again later
                    logger.warning("dlv.schedule_step_failed", item=repr(item), error=exc.message)
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(one, item)

    # ---- chats' looks --------------------------------------------------------------------
    async def look_all(self, looks: list[Look]) -> None:
        """Give every online member device still below its chat's check_seq a retry
        schedule: one presence read and one transaction for the whole round."""
        try:
            online = await self.outbox.online(sorted({u for look in looks for u in look.members}))
        except CacheUnavailable:
            online = {}  # nobody to resend to is known; devices sync when they reconnect
        done = []
        for look in looks:
            check = look.check
            members = {u: online[u] for u in look.members if u in online}
            behind = retries.behind_devices(members, look.cursors, check.check_seq)
            done.append((check, [(u, d, gw, check.check_seq) for u, d, gw, _ in behind]))
        try:
            await self.store.finish_checks(done, ids.now_ms(), self.schedule.delay_ms(1))
        except NatterjackError as exc:  # the lease makes them due again; retries go on
            logger.warning("dlv.schedule_step_failed", looks=len(done), error=exc.message)

    # ---- a device's retry ----------------------------------------------------------------
    async def attempt_all(self, attempts: list[Attempt]) -> None:
        try:
            online: dict[str, dict[str, str]] | None = await self.outbox.online(
                sorted({a.retry.user_id for a in attempts}))
        except CacheUnavailable:
            online = None

        async def one(attempt: Attempt) -> None:
            await self.attempt(attempt, online)
        await self._each(one, attempts)

    async def attempt(self, due: Attempt, online: dict[str, dict[str, str]] | None) -> None:
        """One step of a device's schedule (``online`` None: presence is unknown)."""
        retry, cursor, needed = due.retry, due.cursor, due.needed
        if online is None:
            await self.store.postpone(retry, ids.now_ms() + self.schedule.delay_ms(retry.attempts))
            return
        gateway = online.get(retry.user_id, {}).get(retry.device_id)
        step = retries.next_step(cursor, needed, gateway is not None, retry.attempts,
                                 self.schedule.max_attempts)
        RETRY_STEPS.labels(step.value).inc()
        if step is Step.CAUGHT_UP:
            await self.store.end_retry(retry, ids.now_ms() + self.schedule.delay_ms(1))
        elif step is Step.OFFLINE:
            await self.store.drop_retry(retry)
        elif step is Step.FAIL:
            await self._fail(retry, cursor, needed)
        else:
            assert gateway is not None
            await self._resend(retry, gateway, cursor, needed)

    async def _fail(self, retry: Retry, cursor: int, needed: int) -> None:
        messages = await self.store.messages_between(retry.chat_id, cursor, needed, 1000)
        notices = retries.failed_frames(retry.user_id, retry.device_id, retry.chat_id, messages,
                                        cursor, needed)
        own = {e.seq for e in messages if e.sent_by(retry.user_id, retry.device_id)}
        await self.store.fail(retry, [e for e in messages if e.seq not in own], ids.now_ms())
        logger.info("dlv.delivery_failed", user_id=retry.user_id, device_id=retry.device_id,
                    chat_id=retry.chat_id, after_seq=cursor, up_to=needed, attempts=retry.attempts)
        await self.outbox.frames_to_users(notices)

    async def _resend(self, retry: Retry, gateway: str, cursor: int, needed: int) -> None:
        try:
            frames = await self._from_history(retry, cursor, needed)
        except NatterjackError as exc:
            if exc.code == FORBIDDEN:  # no longer a member: nothing more is owed
                await self.store.drop_retry(retry)
                return
            logger.info("dlv.resend_postponed", chat_id=retry.chat_id, error=exc.message)
            frames = None
        if not frames:  # history is away or has not stored them all yet: not an attempt
            await self.store.postpone(retry, ids.now_ms() + self.schedule.delay_ms(1))
            return
        await self.outbox.resend(gateway, retry.user_id, retry.device_id, retry.chat_id, frames)
        due = ids.now_ms() + self.schedule.delay_ms(retry.attempts + 1)
        await self.store.next_attempt(retry, gateway, due)

    async def _from_history(self, retry: Retry, cursor: int, needed: int) -> list[dict[str, Any]] | None:
        """The device's events in (cursor, needed] as frames, oldest first (at most
        max_resend); None while history does not hold every one of them yet."""
        items: list[dict[str, Any]] = []
        while len(items) < self.schedule.max_resend:
            after = items[-1]["seq"] if items else cursor
            page = await rpc.call(self.bus, "im.history.page", {
                "chat_id": retry.chat_id, "user_id": retry.user_id, "after_seq": after,
                "before_seq": needed + 1, "limit": 100}, timeout=self.schedule.request_timeout)
            items.extend(page["events"])
            if not page["events"] or not page["has_more"]:
                break
        seqs = [item["seq"] for item in items]
        if seqs != list(range(cursor + 1, cursor + 1 + len(seqs))) or \
                (len(seqs) < self.schedule.max_resend and (not seqs or seqs[-1] < needed)):
            return None
        return [events.page_item_to_frame(item) for item in items if not _own(item, retry)]


def _own(item: dict[str, Any], retry: Retry) -> bool:
    """The device's own message: it holds it since its message_ack, it is never resent."""
    return item.get("sender_id") == retry.user_id and item.get("sender_device_id") == retry.device_id
