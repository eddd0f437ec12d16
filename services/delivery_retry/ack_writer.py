"""Batching acks: every ack arriving within a few milliseconds is written in one transaction.

Acks are the most frequent request this service gets (one per delivered event per device,
before the gateway coalesces them), and one commit per ack would cap it near the
single-row commit rate. Requests put their acks on a memory channel; one writer task
collects what arrives within the window, writes it with one multi-row upsert, and wakes
each waiting request after the commit with its own outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio
from prometheus_client import Histogram

from libs import ids, log
from libs.errors import INTERNAL, NatterjackError, Unavailable

from .domain import Ack, AckOutcome
from .errors import DeliveryError, Draining
from .retries import Advance, EventRef

logger = log.get("delivery_retry.acks")
ACK_BATCH = Histogram("nj_dlv_ack_batch_size", "Acks written per transaction",
                      buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))


@dataclass(frozen=True)
class AckBatch:
    """One write's outcomes (one per ack, in order) and the messages, by chat, in the
    ranges its moved cursors covered (the receipts to send)."""

    outcomes: list[AckOutcome | DeliveryError]
    covered: dict[str, list[EventRef]] = field(default_factory=dict)


class AckStore(Protocol):
    async def write_ack_batch(self, acks: Sequence[Ack], now_ms: int) -> AckBatch: ...


@dataclass(eq=False)
class PendingAck:
    """One ack waiting for the writer; ``outcome`` is set before ``done``."""

    ack: Ack
    done: trio.Event = field(default_factory=trio.Event)
    outcome: AckOutcome | NatterjackError | None = None


class AckWriter:
    def __init__(self, store: AckStore, *, window_s: float, max_batch: int = 1000,
                 queue_size: int = 10_000):
        self.store = store
        self.window_s = window_s
        self.max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[PendingAck](queue_size)
        self._finished = trio.Event()
        # Told of the cursors each commit moved and the messages they covered (receipts to
        # senders); must not block.
        self.on_advanced: Callable[[list[Advance], dict[str, list[EventRef]]], None] | None = None

    async def submit(self, acks: Sequence[Ack]) -> list[AckOutcome | NatterjackError]:
        """Queue ``acks`` and wait until they are committed (or refused); outcomes in order."""
        pending = [PendingAck(ack) for ack in acks]
        try:
            for item in pending:
                await self._send.send(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Draining("delivery-retry is shutting down; retry the ack") from None
        for item in pending:
            await item.done.wait()
        return [item.outcome for item in pending]  # type: ignore[misc]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until :meth:`close` and the queue is empty."""
        task_status.started()
        try:
            async for first in self._receive:
                await self._flush(await self._collect(first))
        finally:
            self._finished.set()

    async def _collect(self, first: PendingAck) -> list[PendingAck]:
        batch = [first]
        with trio.move_on_after(self.window_s):
            while len(batch) < self.max_batch:
                try:
                    batch.append(await self._receive.receive())
                except trio.EndOfChannel:
                    break
        while len(batch) < self.max_batch:  # whatever is already queued goes along
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    async def _flush(self, batch: list[PendingAck]) -> None:
        ACK_BATCH.observe(len(batch))
        outcomes: Sequence[AckOutcome | NatterjackError]
        covered: dict[str, list[EventRef]] = {}
        try:
            written = await self.store.write_ack_batch([p.ack for p in batch], ids.now_ms())
            outcomes, covered = written.outcomes, written.covered
        except Unavailable as exc:
            outcomes = [exc] * len(batch)
        except Exception:
            logger.exception("dlv.ack_batch_failed", size=len(batch))
            outcomes = [NatterjackError("internal error", code=INTERNAL)] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            item.outcome = outcome
            item.done.set()
        if self.on_advanced is not None:
            moved = _advances(batch, outcomes)
            if moved:
                self.on_advanced(moved, covered)

    async def close(self) -> None:
        """Stop taking acks, then wait until every queued one is written and answered."""
        await self._send.aclose()
        await self._finished.wait()


def _advances(batch: Sequence[PendingAck], outcomes: Sequence[AckOutcome | NatterjackError]
              ) -> list[Advance]:
    """One advance per cursor the batch moved (several acks of one cursor count once)."""
    moved: dict[tuple[str, str, str], Advance] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, AckOutcome) and outcome.acked_seq > outcome.previous:
            ack = item.ack
            moved[ack.key] = Advance(ack.user_id, ack.device_id, ack.chat_id, outcome.previous,
                                     outcome.acked_seq)
    return list(moved.values())
