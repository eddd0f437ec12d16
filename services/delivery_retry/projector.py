"""The stream consumer: every IM_MESSAGES batch becomes one MySQL transaction, then acks.

A batch is reduced to one row per chat and per member (:func:`domain.project`) and merged
into the tables; only after the commit are its messages acked, so a crash replays the
batch and the idempotent merge makes the replay harmless. MySQL outages are waited out
with exponential backoff (never dropping the batch, never exiting), telling JetStream the
messages are still in progress so it does not hand them to another replica meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import trio
from prometheus_client import Counter

from libs import ids, log
from libs.bus import Bus, JsMessage, pull_consumer
from libs.streams import STREAM

from . import domain
from .domain import Projection, StreamEvent

logger = log.get("delivery_retry.projector")
DURABLE = "delivery-retry"
EVENTS = Counter("nj_dlv_events_total", "Stream events handled by delivery-retry", ["outcome"])


class ProjectionStore(Protocol):
    async def apply_projection(self, projection: Projection, now_ms: int,
                               events: Sequence[StreamEvent] = ()) -> dict[str, list[str]]: ...


class Projector:
    # max_backoff_s stays below the consumer's ack_wait (30 s): in_progress() before each
    # wait keeps JetStream from redelivering the batch while MySQL is away.
    def __init__(self, bus: Bus, store: ProjectionStore, *, batch: int = 100,
                 expires: float = 0.05, backoff_s: float = 0.5, max_backoff_s: float = 16.0):
        self.bus = bus
        self.store = store
        self.batch = batch
        self.expires = expires
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._draining = False
        self._receive_scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        # Told of every committed batch and the active members of its chats with messages
        # (push events for offline members, the scheduler's next look); must not block.
        self.on_stored: Callable[[list[StreamEvent], dict[str, list[str]]], None] | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with pull_consumer(self.bus, STREAM, DURABLE, batch=self.batch,
                                     expires=self.expires) as batches:
                task_status.started()
                while not self._draining:
                    msgs: list[JsMessage] | None = None
                    # Only the wait for a batch is cancelled by drain(), never its processing.
                    with trio.CancelScope() as self._receive_scope:
                        msgs = await batches.receive()
                    if msgs is not None:
                        await self.handle_batch(msgs)
        finally:
            self._stopped.set()

    async def drain(self) -> None:
        """Finish the batch in hand (commit and ack it), then stop consuming."""
        self._draining = True
        if self._receive_scope is not None:
            self._receive_scope.cancel()
        await self._stopped.wait()

    async def handle_batch(self, msgs: list[JsMessage]) -> None:
        events, readable = self._read(msgs)
        projection = domain.project(events)
        members: dict[str, list[str]] = {}
        if projection:
            members = await self._store_until_done(projection, events, readable)
        for msg in readable:
            msg.ack()
        EVENTS.labels("projected").inc(len(readable))
        if self.on_stored is not None and events:
            self.on_stored(events, members)

    def _read(self, msgs: list[JsMessage]) -> tuple[list[StreamEvent], list[JsMessage]]:
        """Parse the batch; unreadable messages are terminated (redelivery cannot fix them)."""
        events, readable = [], []
        for msg in msgs:
            try:
                events.append(domain.parse_event(msg.data, msg.subject))
            except domain.UnreadableEvent as exc:
                logger.error("dlv.unreadable_event", subject=msg.subject,
                             stream_seq=msg.stream_seq, error=str(exc), data=msg.data[:200])
                EVENTS.labels("terminated").inc()
                msg.term()
                continue
            readable.append(msg)
        return events, readable

    async def _store_until_done(self, projection: Projection, events: list[StreamEvent],
                                msgs: list[JsMessage]) -> dict[str, list[str]]:
        delay = self.backoff_s
        while True:
            try:
                return await self.store.apply_projection(projection, ids.now_ms(), events)
            except Exception as exc:  # MySQL down or refusing: wait it out, keep the batch
                logger.warning("dlv.projection_retry", error=repr(exc), retry_in=delay,
                               events=len(msgs))
            for msg in msgs:
                msg.in_progress()
            await trio.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
