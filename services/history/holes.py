"""Holes in a chat's seq: numbers missing below the highest one stored (pure logic).

A router killed between taking a number and publishing its event (or that event's void)
leaves a number that no process will ever store. history sees every stored event, so it
notices: a number still missing ``hole_after`` seconds after a higher one was stored is a
hole, and the router is asked to void it (``im.router.holes``).

The tracker only proposes candidates; the caller checks each against MySQL before asking
(another history replica may have stored it) and reports back. ``hole_after`` must outlast
a live router's own publish or void of the number, which started before the higher number
was even allocated. A chat first seen by this process (after a start, or after eviction)
has an unknown past: the caller looks for missing numbers just below its first seq and
hands them to :meth:`HoleTracker.restore`.

Memory is bounded: at most ``max_chats`` chats (least recently seen evicted, to be looked
at again if they come back) and ``max_missing`` candidates in all (beyond that the lowest
numbers of a gap are kept and the rest counted in ``dropped``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice


@dataclass
class _Chat:
    high: int  # highest seq seen
    missing: dict[int, float] = field(default_factory=dict)  # seq -> when to check it next


class HoleTracker:
    def __init__(self, hole_after: float, *, max_missing: int = 100_000, max_chats: int = 100_000):
        self.hole_after = hole_after
        self.max_missing = max_missing
        self.max_chats = max_chats
        self.dropped = 0  # candidates not tracked for lack of room
        self._chats: OrderedDict[str, _Chat] = OrderedDict()
        self._unscanned: dict[str, int] = {}  # chat -> first seq seen: look below it
        self._holey: set[str] = set()  # chats with candidates
        self._count = 0

    def __len__(self) -> int:
        """Candidates tracked."""
        return self._count

    def observe(self, chat_id: str, seq: int, now: float) -> None:
        """``seq`` of the chat is stored."""
        chat = self._chats.get(chat_id)
        if chat is None:
            self._chats[chat_id] = _Chat(seq)
            if seq > 1:
                self._unscanned[chat_id] = seq
            self._evict()
            return
        self._chats.move_to_end(chat_id)
        if seq > chat.high:
            self._add(chat_id, chat, range(chat.high + 1, seq), now + self.hole_after)
            chat.high = seq
        else:
            self._forget(chat_id, chat, seq)

    def to_scan(self, limit: int) -> list[tuple[str, int]]:
        """Chats whose past is unknown, with the first seq seen; taken off the list."""
        taken = list(islice(self._unscanned.items(), limit))
        for chat_id, _ in taken:
            del self._unscanned[chat_id]
        return taken

    def restore(self, chat_id: str, seqs: Iterable[int], now: float) -> None:
        """Numbers found missing below a chat's first seen seq (from storage)."""
        chat = self._chats.get(chat_id)
        if chat is not None:
            self._add(chat_id, chat, [s for s in seqs if s < chat.high], now + self.hole_after)

    def due(self, now: float, limit: int) -> dict[str, list[int]]:
        """Candidates whose time has come, up to ``limit`` in all, per chat, ascending."""
        found: dict[str, list[int]] = {}
        taken = 0
        for chat_id in sorted(self._holey):
            chat = self._chats[chat_id]
            seqs = sorted(s for s, at in chat.missing.items() if at <= now)[: limit - taken]
            if seqs:
                found[chat_id] = seqs
                taken += len(seqs)
                if taken >= limit:
                    break
        return found

    def stored(self, chat_id: str, seqs: Iterable[int]) -> None:
        """These candidates turned out to be stored (or voided): forget them."""
        chat = self._chats.get(chat_id)
        if chat is not None:
            for seq in seqs:
                self._forget(chat_id, chat, seq)

    def retry(self, chat_id: str, seqs: Iterable[int], now: float) -> None:
        """Reported (or the report failed): look again later; the void, once stored, is
        observed like any event and ends the candidate."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return
        for seq in seqs:
            if seq in chat.missing:
                chat.missing[seq] = now + self.hole_after

    def missing(self, chat_id: str) -> list[int]:
        chat = self._chats.get(chat_id)
        return sorted(chat.missing) if chat is not None else []

    def _add(self, chat_id: str, chat: _Chat, seqs: Sequence[int], at: float) -> None:
        room = max(0, self.max_missing - self._count)
        if len(seqs) > room:
            self.dropped += len(seqs) - room
            seqs = seqs[:room]
        for seq in seqs:
            if seq not in chat.missing:
                chat.missing[seq] = at
                self._count += 1
        if chat.missing:
            self._holey.add(chat_id)

    def _forget(self, chat_id: str, chat: _Chat, seq: int) -> None:
        if chat.missing.pop(seq, None) is not None:
            self._count -= 1
            if not chat.missing:
                self._holey.discard(chat_id)

    def _evict(self) -> None:
        while len(self._chats) > self.max_chats:
            chat_id, chat = self._chats.popitem(last=False)
            self._count -= len(chat.missing)
            self._unscanned.pop(chat_id, None)
            self._holey.discard(chat_id)
