"""What delivery-retry tells users after a commit, off the hot path.

* **Receipts**: when acks move a device's cursor, the senders of the messages it covered
  get a cumulative ``receipt`` (status delivered).
* **Push**: for each new message, members with no online device are handed to the push
  sender (``im.evt.push.<user>``, at most one per user per interval).

Both are fed by callbacks that must not block (the ack writer, the stream consumer), so
each has a bounded queue drained by its own task; when a queue is full the notice is
dropped and counted: a missed receipt or push costs a tick, never a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import trio
from prometheus_client import Counter

from libs import ids, log
from libs.cache import CacheUnavailable

from . import retries
from .domain import StreamEvent
from .outbox import Outbox
from .retries import Advance, EventRef

logger = log.get("delivery_retry.notices")
DROPPED = Counter("nj_dlv_notices_dropped_total", "Receipts/pushes dropped: queue full", ["kind"])
T = TypeVar("T")
PUSH_MAX_AGE_MS = 5 * 60_000


class NoticeQueue(Generic[T]):
    """A bounded queue of items handled in batches by ``handle`` on one task."""

    def __init__(self, kind: str, handle: Callable[[list[T]], Awaitable[None]], size: int = 10_000):
        self.kind = kind
        self.handle = handle
        self._send, self._receive = trio.open_memory_channel[T](size)
        self.finished = trio.Event()

    def put(self, items: Sequence[T]) -> None:
        for item in items:
            try:
                self._send.send_nowait(item)
            except (trio.WouldBlock, trio.ClosedResourceError):
                DROPPED.labels(self.kind).inc()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self._drain_batches()
        finally:
            self.finished.set()

    async def _drain_batches(self) -> None:
        async for first in self._receive:
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            try:
                await self.handle(batch)
            except Exception as exc:  # MySQL/Redis away: this batch's notices are lost
                logger.warning("dlv.notices_failed", kind=self.kind, error=repr(exc), size=len(batch))

    async def close(self) -> None:
        await self._send.aclose()


class Receipts:
    """Receipt frames for the cursors each ack write moved; the messages they covered come
    with them (read in the ack's transaction), so sending needs presence and the bus only."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.queue = NoticeQueue[tuple[str, dict[str, Any]]]("receipt", self.send)

    def advanced(self, moved: list[Advance], covered: dict[str, list[EventRef]]) -> None:
        self.queue.put(retries.receipts(moved, covered))

    async def send(self, frames: list[tuple[str, dict[str, Any]]]) -> None:
        await self.outbox.frames_to_users(frames)


class OfflinePushes:
    """Which members of each new message's chat have no online device."""

    def __init__(self, outbox: Outbox, notify: Callable[[str, dict[str, Any]], None]):
        self.outbox = outbox
        self.notify = notify
        self.queue = NoticeQueue[tuple[StreamEvent, list[str]]]("push", self.plan)

    def stored(self, events: list[StreamEvent], members: dict[str, list[str]]) -> None:
        """A committed batch and the active members of its chats with messages."""
        # A replayed backlog (a fresh consumer, a long outage) is old news: no pushes for it.
        fresh_after = ids.now_ms() - PUSH_MAX_AGE_MS
        self.queue.put([(e, members.get(e.chat_id, [])) for e in events
                        if e.kind == "message" and e.body is not None and e.ts >= fresh_after])

    async def plan(self, messages: list[tuple[StreamEvent, list[str]]]) -> None:
        everyone = sorted({u for _, users in messages for u in users})
        try:
            online = await self.outbox.online(everyone)
        except CacheUnavailable:
            logger.warning("dlv.push_skipped_no_presence", messages=len(messages))
            return
        for message, users in messages:
            assert message.body is not None
            for user_id in users:
                if user_id not in online and user_id != message.sender_id:
                    self.notify(user_id, message.body)
