"""Group commit: writes submitted concurrently go to the database together.

One writer task takes the first queued item and everything queued behind it (up to
``max_batch``), and calls ``write(batch)`` once: one transaction, one commit. No window
is waited for: while a batch is being written the next ones queue up, so batches grow
with the load and a lone write costs one round trip. ``submit`` waits for the item's own
outcome; ``put_nowait`` is write-behind (nobody waits; a ``window_s`` lets its batches fill). ``close`` stops intake and
returns once every queued item is written (a graceful shutdown loses none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio
from prometheus_client import Histogram

from . import log
from .errors import Unavailable

T = TypeVar("T")
logger = log.get("groupcommit")
BATCH = Histogram("nj_groupcommit_batch_size", "Items written per transaction, per writer", ["writer"],
                  buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
Write = Callable[[list[T]], Awaitable[Sequence[Any]]]


@dataclass(eq=False)
class _Queued(Generic[T]):
    item: T
    done: trio.Event = field(default_factory=trio.Event)
    outcome: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[T]):
    def __init__(self, name: str, write: Write[T], *, max_batch: int = 500, queue_size: int = 10_000,
                 window_s: float = 0.0):
        self.name = name
        self.window_s = window_s  # write-behind may wait this long for more items (fewer commits)
        self.write = write  # returns one outcome per item, in order; may raise for the batch
        self.max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[_Queued[T]](queue_size)
        self._finished = trio.Event()
        self.batches = 0  # batches written (a test and a benchmark read it)
        self.busy_since: float | None = None  # trio.current_time() the batch in hand started

    async def submit(self, item: T) -> Any:
        """Queue ``item``, wait until its batch is written; its outcome, or the batch's error."""
        queued = _Queued(item)
        try:
            await self._send.send(queued)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Unavailable(f"{self.name} is shutting down") from None
        await queued.done.wait()
        if queued.error is not None:
            raise queued.error
        return queued.outcome

    def stuck_for(self) -> float:
        """Seconds the batch in hand has been written for (0 when idle)."""
        return 0.0 if self.busy_since is None else trio.current_time() - self.busy_since

    def put_nowait(self, item: T) -> bool:
        """Write-behind: queue ``item`` without waiting; False when the queue is full or closed."""
        try:
            self._send.send_nowait(_Queued(item))
            return True
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until :meth:`close` and the queue is empty."""
        task_status.started()
        try:
            async for first in self._receive:
                if self.window_s:
                    await trio.sleep(self.window_s)  # let more write-behind items gather
                await self._flush(self._collect(first))
        finally:
            self._finished.set()

    def _collect(self, first: _Queued[T]) -> list[_Queued[T]]:
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    async def _flush(self, batch: list[_Queued[T]]) -> None:
        self.batches += 1
        BATCH.labels(self.name).observe(len(batch))
        self.busy_since = trio.current_time()
        try:
            outcomes = await self.write([queued.item for queued in batch])
        except Exception as exc:  # every waiter of the batch gets the error
            for queued in batch:
                queued.error = exc
                queued.done.set()
            return
        finally:
            self.busy_since = None
        for queued, outcome in zip(batch, outcomes, strict=True):
            queued.outcome = outcome
            queued.done.set()

    async def close(self) -> None:
        """Stop taking items, then wait until every queued one is written."""
        await self._send.aclose()
        await self._finished.wait()
