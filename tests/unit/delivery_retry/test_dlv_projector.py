"""The projector keeps a batch through MySQL failures, acks only after commit, terms junk."""

from __future__ import annotations

from typing import Any

import orjson
import trio

from libs.errors import Unavailable
from services.delivery_retry.domain import Projection
from services.delivery_retry.projector import Projector


class FakeMsg:
    def __init__(self, subject: str, data: bytes):
        self.subject, self.data, self.stream_seq = subject, data, 1
        self.settled: list[str] = []

    def ack(self) -> None:
        self.settled.append("ack")

    def term(self) -> None:
        self.settled.append("term")

    def in_progress(self) -> None:
        self.settled.append("wpi")


class FlakyStore:
    def __init__(self, failures: int):
        self.failures = failures
        self.applied: list[Projection] = []
        self.msgs: list[FakeMsg] = []

    async def apply_projection(self, projection: Projection, now_ms: int, events: Any = ()) -> dict[str, list[str]]:
        assert not any("ack" in m.settled for m in self.msgs), "acked before the commit"
        if self.failures:
            self.failures -= 1
            raise Unavailable("database unavailable")
        self.applied.append(projection)
        return {}


def event(seq: int) -> FakeMsg:
    body = {"event": "message", "chat_id": "c1", "seq": seq, "ts": seq}
    return FakeMsg("im.msg.c1", orjson.dumps(body))


async def test_batch_survives_mysql_failures_and_is_acked_after_commit():
    store = FlakyStore(failures=3)
    msgs = [event(1), event(3), FakeMsg("im.msg.c1", b"junk"), event(2)]
    store.msgs = msgs
    projector = Projector(None, store, backoff_s=0.001, max_backoff_s=0.002)  # type: ignore[arg-type]
    with trio.fail_after(5):
        await projector.handle_batch(msgs)  # type: ignore[arg-type]
    assert [p.last_seq for p in store.applied] == [{"c1": 3}]
    assert msgs[2].settled == ["term"]
    for msg in (msgs[0], msgs[1], msgs[3]):
        assert msg.settled == ["wpi", "wpi", "wpi", "ack"]


async def test_a_batch_of_only_junk_is_terminated_without_a_write():
    store = FlakyStore(failures=0)
    junk = [FakeMsg("im.msg.c1", b"[1]"), FakeMsg("im.msg.c2", event(1).data)]
    await Projector(None, store).handle_batch(junk)  # type: ignore[arg-type]
    assert store.applied == [] and all(m.settled == ["term"] for m in junk)
