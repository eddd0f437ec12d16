"""Push events, the pure part: per-user throttle with coalescing, the payload, the breaker.

Nothing here does I/O or reads a clock: callers pass ``now`` (seconds, monotonic), so the
rules are property-tested with made-up times and unit-tested on trio's virtual clock.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

MESSAGE_FIELDS = ("message_id", "chat_id", "seq", "sender_id", "content_type", "ts")


@dataclass(frozen=True)
class Push:
    """One push for ``user_id``: ``count`` messages since the last one, ``newest`` of them."""

    user_id: str
    count: int
    newest: dict[str, Any]


@dataclass
class _Window:
    """A user's throttle window: no push before ``ends``; what arrives meanwhile waits."""

    ends: float
    count: int = 0
    newest: dict[str, Any] | None = None


class Throttle:
    """At most one push per user per ``interval``; messages inside a window are coalesced.

    The first message of a quiet user is due at once. Later ones within the window are
    counted, and the newest is kept, until the window ends; then one push carries them
    all and opens the next window. Windows with nothing waiting are forgotten when they
    end. At most ``max_users`` windows are kept: a new user beyond that takes the place
    of the window ending soonest, which is flushed early if it holds messages.
    """

    def __init__(self, interval: float, max_users: int):
        self.interval = interval
        self.max_users = max_users
        self._windows: dict[str, _Window] = {}
        self._heap: list[tuple[float, str]] = []  # (ends, user); stale entries skipped
        self.waiting = 0
        """Users with messages waiting for their window to end."""

    def __len__(self) -> int:
        return len(self._windows)

    def offer(self, user_id: str, message: dict[str, Any], now: float) -> list[Push]:
        """Count ``message`` for ``user_id``; returns pushes flushed early to stay in bounds."""
        flushed = []
        window = self._windows.get(user_id)
        if window is None:
            flushed = self._make_room()
            window = self._open(user_id, now)
        if window.count == 0:
            self.waiting += 1
        window.count += 1
        window.newest = message
        return flushed

    def due(self, now: float) -> list[Push]:
        """Pushes whose window has ended; each opens the user's next window at ``now``."""
        pushes = []
        while (top := self._top()) is not None and top[0] <= now:
            user_id = top[1]
            push = self._take(user_id)
            if push is None:
                del self._windows[user_id]
                continue
            pushes.append(push)
            self._open(user_id, now + self.interval)
        return pushes

    def defer(self, push: Push, until: float) -> None:
        """Put back a push that may not go out before ``until`` (another replica pushed).

        A user evicted meanwhile gets a window again: the bound can be exceeded by the
        pushes of one batch in flight, never more."""
        window = self._windows.get(push.user_id)
        if window is None:
            window = self._open(push.user_id, until)
        elif window.ends != until:  # this replica did not push: its own window does not count
            self._open(push.user_id, until)
        if window.count == 0:
            self.waiting += 1
            window.newest = push.newest
        window.count += push.count

    def next_due(self) -> float | None:
        """When :meth:`due` next has something to do (a push or a window to forget)."""
        top = self._top()
        return None if top is None else top[0]

    def drain(self) -> list[Push]:
        """Every waiting push, windows or not (shutdown); the throttle is empty afterwards."""
        pushes = [p for user in list(self._windows) if (p := self._take(user)) is not None]
        self._windows.clear()
        self._heap.clear()
        return pushes

    def _open(self, user_id: str, ends: float) -> _Window:
        window = self._windows.get(user_id)
        if window is None:
            window = self._windows[user_id] = _Window(ends)
        window.ends = ends
        heapq.heappush(self._heap, (ends, user_id))
        return window

    def _take(self, user_id: str) -> Push | None:
        """The user's waiting messages as one push (None if nothing waits); resets the count."""
        window = self._windows[user_id]
        if window.count == 0 or window.newest is None:
            return None
        push = Push(user_id, window.count, window.newest)
        window.count, window.newest = 0, None
        self.waiting -= 1
        return push

    def _top(self) -> tuple[float, str] | None:
        while self._heap:
            ends, user_id = self._heap[0]
            window = self._windows.get(user_id)
            if window is not None and window.ends == ends:
                return self._heap[0]
            heapq.heappop(self._heap)  # superseded by a later entry, or forgotten
        return None

    def _make_room(self) -> list[Push]:
        flushed = []
        while len(self._windows) >= self.max_users and (top := self._top()) is not None:
            push = self._take(top[1])
            if push is not None:
                flushed.append(push)
            del self._windows[top[1]]
        return flushed


def preview(event: dict[str, Any], limit: int) -> str | None:
    """A short text preview (at most ``limit`` characters, ``…`` when cut); None if not text."""
    content = event.get("content")
    if limit <= 0 or event.get("content_type") != "text" or not isinstance(content, str):
        return None
    text = " ".join(content.split())  # no line breaks in a notification
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(event: dict[str, Any], preview_chars: int) -> dict[str, Any]:
    """What a push tells about a stored message event; kept instead of the whole event
    (content can be 16000 characters and many users may be waiting)."""
    message = {key: event[key] for key in MESSAGE_FIELDS if key in event}
    text = preview(event, preview_chars)
    if text:
        message["preview"] = text
    return message


def payload(push: Push, now_ms: int) -> dict[str, Any]:
    """The body of ``im.evt.push.<user_id>`` and of the webhook POST (evt.push.json)."""
    return {"user_id": push.user_id, "count": push.count, "message": push.newest, "ts": now_ms}


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown`` one probe may pass.

    A successful probe closes it, a failed one opens it again for another cooldown.
    """

    def __init__(self, threshold: int, cooldown: float):
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0

    def allow(self, now: float) -> bool:
        """May a request go out now? In half-open state only the one probe may."""
        if self.state is BreakerState.OPEN and now >= self.opened_at + self.cooldown:
            self.state = BreakerState.HALF_OPEN
            return True
        return self.state is BreakerState.CLOSED

    def success(self) -> None:
        self.state, self.failures = BreakerState.CLOSED, 0

    def failure(self, now: float) -> bool:
        """Record a failure; True when it opened the breaker."""
        self.failures += 1
        if self.state is BreakerState.OPEN:
            return False
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state, self.opened_at = BreakerState.OPEN, now
            return True
        return False


def backoff(retry: int, base: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``retry`` (1-based): full jitter over ``base * 2**(retry-1)``."""
    ceiling = base * 2 ** (retry - 1)
    return (rng or random).uniform(0, ceiling)
