"""The gap watcher: each missing seq is waited on for the whole NJ_GATEWAY_GAP_WAIT_S."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import trio

from libs.tokens import Claims
from services.gateway import config
from services.gateway.connection import Connection
from services.gateway.handlers import FrameHandlers

GAP_WAIT_S = 30.0  # the default


@dataclass
class Reply:
    data: bytes


class SlowHistory:
    """Answers im.history.page with the events history has stored by now (trio's clock)."""

    def __init__(self, stored_at: dict[int, float]):
        self.stored_at = stored_at

    async def request(self, subject: str, data: bytes, timeout: float, **_: Any) -> Reply:
        assert subject == "im.history.page"
        ask = orjson.loads(data)
        now = trio.current_time()
        seqs = sorted(s for s, at in self.stored_at.items()
                      if at <= now and ask["after_seq"] < s < ask["before_seq"])
        page = {"chat_id": "c1", "has_more": False,
                "events": [{"type": "message", "chat_id": "c1", "seq": s, "message_id": f"m{s}",
                            "sender_id": "u2", "content_type": "text", "content": f"hi {s}",
                            "ts": 1} for s in seqs]}
        return Reply(orjson.dumps({"ok": page}))


class Socket:
    """Takes every frame the connection's writer writes."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_message(self, text: str) -> None:
        await trio.lowlevel.checkpoint()
        self.sent.append(text)


def _written(conn: Connection) -> list[int]:
    sent, conn.ws.sent = conn.ws.sent, []  # type: ignore[attr-defined]
    return [orjson.loads(text)["seq"] for text in sent]


def _live(seq: int) -> str:
    return orjson.dumps({"type": "new_message", "chat_id": "c1", "seq": seq}).decode()


async def test_a_gap_that_opens_while_another_is_filled_gets_its_own_whole_wait(autojump_clock: Any):
    # Under load the watcher of a chat runs on from one gap to the next. Seq 13 goes
    # missing at t=15 while 11 (missing since t=0) is still awaited; history stores 11 at
    # t=20 and 13 at t=40. 13 has waited 25 s then, less than the gap wait: it must come
    # before 14 (once, the watcher's wait counted from t=0 and skipped 13 at t=30).
    bus = SlowHistory({11: 20.0, 13: 40.0})
    handlers = FrameHandlers(config.load({"NJ_GATEWAY_GAP_WAIT_S": str(GAP_WAIT_S)}), bus)  # type: ignore[arg-type]
    conn = Connection(ws=Socket(), claims=Claims("u1", "d1", "s1", 2**40), queue_size=64,  # type: ignore[arg-type]
                      on_gap=handlers.catch_up.start_gap_watch)
    conn.order("c1").start_at(10)
    conn.release_held_all()
    async with trio.open_nursery() as nursery:
        conn.nursery = nursery
        conn.deliver("c1", 12, _live(12))
        await trio.sleep(15)
        conn.deliver("c1", 14, _live(14))
        await trio.sleep(30)
        assert _written(conn) == [11, 12, 13, 14]
        nursery.cancel_scope.cancel()


async def test_a_seq_nobody_stores_is_skipped_after_the_gap_wait(autojump_clock: Any):
    bus = SlowHistory({})
    handlers = FrameHandlers(config.load({"NJ_GATEWAY_GAP_WAIT_S": str(GAP_WAIT_S)}), bus)  # type: ignore[arg-type]
    conn = Connection(ws=Socket(), claims=Claims("u1", "d1", "s1", 2**40), queue_size=64,  # type: ignore[arg-type]
                      on_gap=handlers.catch_up.start_gap_watch)
    conn.order("c1").start_at(10)
    conn.release_held_all()
    async with trio.open_nursery() as nursery:
        conn.nursery = nursery
        conn.deliver("c1", 12, _live(12))
        await trio.sleep(GAP_WAIT_S - 1)
        assert _written(conn) == []
        await trio.sleep(2)
        assert _written(conn) == [12]
        nursery.cancel_scope.cancel()
