"""How long the redelivery scheduler rests between scans, and the alarm that wakes it.

At rest a fixed-interval poll would cost a claim transaction (a worker-thread hop and a
MySQL round trip) many times a second for nothing. Instead each scan learns when the
next row falls due and the scheduler sleeps until then; whatever this process schedules
meanwhile (the projector's looks) brings the alarm forward. Only rows another replica
scheduled and then left behind (it died) are found by the periodic idle scan.
"""

from __future__ import annotations

import math

import trio

# Due times are wall-clock milliseconds, sleeps run on trio's clock: wake a little late
# rather than a little early, when the claim would find nothing and wait another pause.
MARGIN_S = 0.002


def until_next_scan(next_due_ms: int | None, now_ms: int, idle_s: float) -> float:
    """Seconds to rest: until the next due row, never more than ``idle_s`` (0: at once)."""
    if next_due_ms is None:
        return idle_s
    return min(max(0.0, (next_due_ms - now_ms) / 1000), idle_s)


class Alarm:
    """A sleep until a deadline (trio clock) that other tasks may bring forward, but never
    before ``earliest``: many small wake-ups coalesce into one scan.

    A deadline given while awake is kept for the next sleep: the scan under way may have
    read the due times before the row behind it was committed. :meth:`forget` drops those
    kept deadlines when a scan starts, which reads every row committed so far."""

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None
        self._earliest = -math.inf
        self._kept = math.inf
        self._rung = False

    def forget(self) -> None:
        self._kept = math.inf

    async def sleep_until(self, deadline: float, *, earliest: float = -math.inf) -> None:
        if self._rung:
            return
        self._earliest = earliest
        with trio.CancelScope(deadline=max(min(deadline, self._kept), earliest)) as self._scope:
            await trio.sleep_forever()
        self._scope = None

    def bring_forward(self, deadline: float) -> None:
        """Wake at ``deadline`` (or ``earliest``) if that is sooner than planned."""
        self._kept = min(self._kept, deadline)
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, max(deadline, self._earliest))

    def ring(self) -> None:
        """Wake now and never sleep again (shutting down)."""
        self._rung = True
        if self._scope is not None:
            self._scope.cancel()
