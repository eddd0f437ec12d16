"""Pure bookkeeping of a client's position in each chat: dedup, gap detection, acks, backoff.

No I/O and no clock of its own (times are passed in), so it can be tested exhaustively.
``seq`` is dense per chat: holding 1..n and seeing n+2 means n+1 is missing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Gap:
    """The events strictly between ``after_seq`` and ``before_seq`` are missing."""
    chat_id: str
    after_seq: int
    before_seq: int


@dataclass
class Offer(Generic[T]):
    ready: list[T] = field(default_factory=list)  # hand these on, in this order
    gap: Gap | None = None  # a missing range not reported before: fetch it


@dataclass
class _Chat(Generic[T]):
    held: int
    waiting: dict[int, T] = field(default_factory=dict)  # seq -> item, all above held + 1
    reported: Gap | None = None


class SeqTracker(Generic[T]):
    """Turns events arriving in any order, with duplicates, into each chat's dense order.

    A chat seen for the first time starts at its first event unless ``positions`` says
    which seq the client already holds there.
    """

    def __init__(self, positions: Mapping[str, int] | None = None):
        self._chats: dict[str, _Chat[T]] = {c: _Chat(s) for c, s in (positions or {}).items()}

    def held(self, chat_id: str) -> int | None:
        chat = self._chats.get(chat_id)
        return chat.held if chat else None

    def positions(self) -> dict[str, int]:
        return {chat_id: chat.held for chat_id, chat in self._chats.items()}

    def offer(self, chat_id: str, seq: int, item: T) -> Offer[T]:
        chat = self._chats.setdefault(chat_id, _Chat(seq - 1))
        if seq <= chat.held or seq in chat.waiting:
            return Offer()  # a repeat: nothing to hand on
        chat.waiting[seq] = item
        return Offer(self._release(chat), self._new_gap(chat_id, chat))

    def skip_to(self, chat_id: str, seq: int) -> Offer[T]:
        """Give up on everything up to ``seq`` (retention deleted it); release what follows."""
        chat = self._chats.setdefault(chat_id, _Chat(seq))
        chat.held = max(chat.held, seq)
        chat.waiting = {s: item for s, item in chat.waiting.items() if s > chat.held}
        return Offer(self._release(chat), self._new_gap(chat_id, chat))

    def missing(self, chat_id: str) -> Gap | None:
        """The chat's current missing range, reported or not."""
        chat = self._chats.get(chat_id)
        if chat is None or not chat.waiting:
            return None
        return Gap(chat_id, chat.held, min(chat.waiting))

    @staticmethod
    def _release(chat: _Chat[T]) -> list[T]:
        ready = []
        while chat.held + 1 in chat.waiting:
            chat.held += 1
            ready.append(chat.waiting.pop(chat.held))
        return ready

    def _new_gap(self, chat_id: str, chat: _Chat[T]) -> Gap | None:
        gap = self.missing(chat_id)
        if gap is None or gap == chat.reported:
            return None
        chat.reported = gap
        return gap


class AckCoalescer:
    """Cumulative acks, at most one per chat every ``interval_s``: the highest seq handed on."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self._position: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        self._last_flush: float | None = None

    def handed(self, chat_id: str, seq: int) -> None:
        self._position[chat_id] = max(seq, self._position.get(chat_id, 0))

    def due(self, now: float, force: bool = False) -> list[tuple[str, int]]:
        """The acks to send now (and remembered as sent); empty until the interval passed."""
        if not force and self._last_flush is not None and now - self._last_flush < self.interval_s:
            return []
        acks = [(c, s) for c, s in self._position.items() if s > self._sent.get(c, 0)]
        if acks:
            self._last_flush = now
            self._sent.update(acks)
        return acks

    def resend_all(self) -> None:
        """After a reconnect: an ack lost with the old socket goes out again."""
        self._sent.clear()


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max, initial·m^n))."""
    initial_s: float = 0.25
    max_s: float = 15.0
    multiplier: float = 2.0
    max_attempts: int | None = None  # None: keep trying
    stable_after_s: float = 5.0  # a connection that lived this long resets the attempt count

    def delay(self, attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** min(attempt, 64))
        return uniform(0.0, ceiling)

    def gives_up(self, attempt: int) -> bool:
        return self.max_attempts is not None and attempt >= self.max_attempts
