"""A socket's bounded outbound queue: a deque and at most one waiting writer.

A trio memory channel per socket does the same with more machinery (send and receive
objects, statistics, several waiters each side); a gateway holding tens of thousands of
sockets, and writing each event to every one of them, pays for that per socket and per
frame. Here ``put`` never waits (a full queue is the caller's signal to close the socket
as a slow consumer) and only the socket's one writer task ever waits in ``get``.
"""

from __future__ import annotations

from collections import deque

import trio


class Outbox:
    __slots__ = ("_items", "_limit", "_waiter", "closed")

    def __init__(self, limit: int):
        self._items: deque[str] | None = None  # made at the first put: an empty deque is 600 B
        self._limit = limit
        self._waiter: trio.lowlevel.Task | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put(self, item: str) -> bool:
        """Queue ``item``; False (nothing queued) when full or closed."""
        if self.closed:
            return False
        if self._items is None:
            self._items = deque()
        elif len(self._items) >= self._limit:
            return False
        self._items.append(item)
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None
        return True

    def close(self) -> None:
        """No more items; ``get`` returns what is queued, then None."""
        self.closed = True
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None

    def get_nowait(self) -> str | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if not self._items:
            self._items = None  # idle again: most sockets are, most of the time
        return item

    async def get(self) -> str | None:
        """The next item, waiting for one; None once closed and empty."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            if self.closed:
                return None
            if self._waiter is not None:
                raise RuntimeError("one writer per outbox")
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED
            await trio.lowlevel.wait_task_rescheduled(abort)
        return self.get_nowait()
