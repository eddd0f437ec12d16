"""Catch-up over history that retention trimmed (sync_required once, then what is kept) or
that has not stored every event yet (what is above a hole waits for it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from libs.tokens import Claims
from services.gateway import config
from services.gateway.connection import Connection
from services.gateway.handlers import FrameHandlers


@dataclass
class Reply:
    data: bytes


class HistoryBus:
    """Answers im.history.page from a list of seqs, like history after a retention sweep."""

    def __init__(self, kept: list[int], min_seq: int, page_size: int = 2):
        self.kept, self.min_seq, self.page_size = kept, min_seq, page_size
        self.asked: list[int] = []

    async def request(self, subject: str, data: bytes, timeout: float, **_: Any) -> Reply:
        assert subject == "im.history.page"
        after = orjson.loads(data)["after_seq"]
        self.asked.append(after)
        self.stored_later()
        above = [seq for seq in self.kept if seq > after]
        page: dict[str, Any] = {"chat_id": "c1", "has_more": len(above) > self.page_size,
                                "events": [_item(seq) for seq in above[: self.page_size]]}
        if after + 1 < self.min_seq:
            page["retained_from_seq"] = self.min_seq
        return Reply(orjson.dumps({"ok": page}))

    def stored_later(self) -> None:
        """Events history stores between two reads (none here)."""


class LaggingHistoryBus(HistoryBus):
    """History that stored a chat's events out of seq order: the first reads have holes."""

    def __init__(self, kept: list[int], later: list[int], page_size: int = 10):
        super().__init__(kept, min_seq=1, page_size=page_size)
        self.later = later

    def stored_later(self) -> None:
        if len(self.asked) > 2 and self.later:
            self.kept = sorted([*self.kept, self.later.pop(0)])


def _item(seq: int) -> dict[str, Any]:
    return {"type": "message", "chat_id": "c1", "seq": seq, "message_id": f"m{seq}",
            "sender_id": "u2", "content_type": "text", "content": f"hi {seq}", "ts": 1}


async def _catch_up(bus: HistoryBus, after_seq: int, last_seq: int) -> list[dict[str, Any]]:
    conn = Connection(ws=None, claims=Claims("u1", "d1", "s1", 2**40), queue_size=64)  # type: ignore[arg-type]
    handlers = FrameHandlers(config.load({}), bus)  # type: ignore[arg-type]
    conn.release_held_all()
    await handlers.catch_up.catch_up_chat(conn, "c1", after_seq, last_seq)
    frames = []
    while (text := conn._outbox.get_nowait()) is not None:
        frames.append(orjson.loads(text))
    return frames


async def test_a_trimmed_range_gets_sync_required_once_then_the_kept_events():
    bus = HistoryBus(kept=[5, 6, 7], min_seq=5)
    frames = await _catch_up(bus, after_seq=1, last_seq=7)
    assert [(f["type"], f.get("seq")) for f in frames] == [
        ("sync_required", None), ("new_message", 5), ("new_message", 6), ("new_message", 7),
        ("sync_done", None)]
    assert frames[0] == {"type": "sync_required", "chat_id": "c1", "retained_from_seq": 5}
    assert bus.asked == [1, 6]


async def test_nothing_lost_above_the_cursor_means_no_sync_required():
    frames = await _catch_up(HistoryBus(kept=[5, 6], min_seq=5), after_seq=4, last_seq=6)
    assert [f["type"] for f in frames] == ["new_message", "new_message", "sync_done"]


async def test_a_hole_in_history_holds_back_what_is_above_it_until_it_is_stored():
    # kill -9 of a gateway under load: 100 devices connect at once, history has stored seqs
    # 1, 3 and 5 but not yet 2 and 4. Writing 3 and 5 and moving on (as catch-up once did)
    # left 2 and 4 to a later redelivery, after 21 and more.
    bus = LaggingHistoryBus(kept=[1, 3, 5], later=[2, 4])
    frames = await _catch_up(bus, after_seq=0, last_seq=5)
    assert [(f["type"], f.get("seq")) for f in frames] == [
        ("new_message", 1), ("new_message", 2), ("new_message", 3), ("new_message", 4),
        ("new_message", 5), ("sync_done", None)]
    assert frames[-1]["last_seq"] == 5
    assert bus.asked[:3] == [0, 1, 1]  # read again from the hole
