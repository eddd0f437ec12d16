"""The stream -> MySQL writer: batch events, store each batch once, then ack it.

A batch closes at ``batch_max`` rows or ``batch_wait`` after its first row, whichever
comes first. A failed write keeps the batch and retries it with exponential back-off for
as long as it takes (the events stay in the stream; their senders were acked long ago),
telling JetStream the messages are still in progress so it does not redeliver them
meanwhile. Unreadable messages are terminated so they never block the consumer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from libs import log, metrics
from libs.bus import JsMessage

from .domain import PoisonEvent, StoredEvent, backoff_s, decode_event

logger = log.get("history.writer")
Pending = tuple[JsMessage, StoredEvent]


class Batches(Protocol):
    async def receive(self) -> list[JsMessage]: ...


class EventStore(Protocol):
    async def write_events(self, events: Sequence[StoredEvent]) -> Any: ...  # int(result): rows new


AfterCommit = Callable[[Any], Awaitable[None]]


class EventWriter:
    def __init__(self, store: EventStore, *, batch_max: int, batch_wait: float,
                 retry_base: float, retry_max: float, after_commit: AfterCommit | None = None):
        self.store = store
        self.after_commit = after_commit  # e.g. fill the cache; runs before the acks
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.done = trio.Event()
        self._stopping = False
        self._receiving = trio.CancelScope()
        self._backlog: list[Pending] = []

    async def run(self, batches: Batches, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until drained; then flush what was already taken, and return."""
        task_status.started()
        try:
            while True:
                batch = await self._collect(batches)
                if batch:
                    await self._flush(batch)
                elif self._stopping:
                    return
        finally:
            self.done.set()

    async def drain(self) -> None:
        """Stop taking messages, finish (write and ack) the batch in hand, wait for that."""
        self._stopping = True
        self._receiving.cancel()
        await self.done.wait()

    async def _collect(self, batches: Batches) -> list[Pending]:
        pending, self._backlog = self._backlog, []
        with trio.CancelScope() as self._receiving:
            if self._stopping:
                self._receiving.cancel()
            try:
                while not pending:
                    self._take(await batches.receive(), pending)
                with trio.move_on_after(self.batch_wait):
                    while len(pending) < self.batch_max:
                        self._take(await batches.receive(), pending)
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self._stopping = True
        self._backlog = pending[self.batch_max:]
        return pending[: self.batch_max]

    def _take(self, msgs: list[JsMessage], pending: list[Pending]) -> None:
        for msg in msgs:
            try:
                pending.append((msg, decode_event(msg.data)))
            except PoisonEvent as exc:
                logger.error("history.poison_event", stream_seq=msg.stream_seq,
                             subject=msg.subject, delivered=msg.num_delivered, reason=str(exc))
                msg.term()

    async def _flush(self, batch: list[Pending]) -> None:
        events = [event for _, event in batch]
        attempt = 0
        while True:
            try:
                result = await self.store.write_events(events)
                break
            except Exception as exc:  # any failure: keep the batch, never drop it
                attempt += 1
                metrics.HISTORY_WRITE_FAILURES.inc()
                delay = backoff_s(attempt, self.retry_base, self.retry_max)
                logger.warning("history.write_failed", attempt=attempt, rows=len(events),
                               retry_in=delay, error=repr(exc))
                for msg, _ in batch:
                    msg.in_progress()
                await trio.sleep(delay)
        if self.after_commit is not None:  # before the acks: a crash here redelivers the batch
            await self.after_commit(result)
        for msg, _ in batch:
            msg.ack()
        metrics.HISTORY_ROWS.inc(int(result))
        if attempt:
            logger.info("history.write_recovered", attempts=attempt + 1, rows=len(events))
