"""The writer's batch policy, retries and draining, on a virtual clock with fake messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import trio
import trio.lowlevel

from libs.errors import Unavailable
from services.history.writer import EventWriter

WAIT = 0.05


@dataclass(eq=False)
class FakeMsg:
    data: bytes
    stream_seq: int
    subject: str = "im.msg.c1"
    num_delivered: int = 1
    settled: list[str] = field(default_factory=list)

    def ack(self) -> None:
        self.settled.append("ack")

    def term(self) -> None:
        self.settled.append("term")

    def in_progress(self) -> None:
        self.settled.append("wpi")


class FakeStore:
    def __init__(self, failures: int = 0):
        self.failures = failures
        self.batches: list[list[int]] = []
        self.attempts: list[float] = []

    async def write_events(self, events) -> int:
        self.attempts.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if self.failures:
            self.failures -= 1
            raise Unavailable("database unavailable")
        self.batches.append([e.seq for e in events])
        return len(events)


def msgs(first: int, count: int) -> list[FakeMsg]:
    return [FakeMsg(orjson.dumps({"event": "void", "chat_id": "c1", "seq": s, "ts": 1}), s)
            for s in range(first, first + count)]


def channel() -> tuple[Any, Any]:
    return trio.open_memory_channel[list[FakeMsg]](10)


def writer_for(store: FakeStore, batch_max: int = 100, retry_max: float = 10.0) -> EventWriter:
    return EventWriter(store, batch_max=batch_max, batch_wait=WAIT, retry_base=0.1,
                       retry_max=retry_max)


@pytest.fixture
def clock(autojump_clock):
    return autojump_clock


async def test_batches_close_at_batch_max_across_fetched_batches(clock) -> None:
    """Requirement R8.3: stream events are written in batches."""
    store, (send, receive) = FakeStore(), channel()
    writer = writer_for(store, batch_max=100)
    sent = msgs(1, 60) + msgs(61, 100) + msgs(161, 40)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        for chunk in (sent[:60], sent[60:160], sent[160:]):
            send.send_nowait(chunk)
        await trio.sleep(1)
        await writer.drain()
    assert [len(b) for b in store.batches] == [100, 100]
    assert sum(store.batches, []) == list(range(1, 201))
    assert all(m.settled == ["ack"] for m in sent)


async def test_a_small_batch_waits_batch_wait_then_goes(clock) -> None:
    store, (send, receive) = FakeStore(), channel()
    writer = writer_for(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        start = trio.current_time()
        first = msgs(1, 3)
        send.send_nowait(first)
        await trio.sleep(WAIT / 2)
        assert store.batches == [] and all(m.settled == [] for m in first)
        await trio.sleep(WAIT)
        assert store.batches == [[1, 2, 3]] and store.attempts[0] - start == pytest.approx(WAIT)
        assert all(m.settled == ["ack"] for m in first)
        send.send_nowait(msgs(4, 1))
        await trio.sleep(1)
        assert store.batches == [[1, 2, 3], [4]]
        await writer.drain()


async def test_failed_writes_retry_with_backoff_and_ack_only_after_success(clock) -> None:
    """Requirement R5.5: a failed database write is retried."""
    store, (send, receive) = FakeStore(failures=6), channel()
    writer = writer_for(store, retry_max=0.5)
    batch = msgs(1, 5)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        send.send_nowait(batch)
        await trio.sleep(WAIT + 0.05)
        assert all("ack" not in m.settled for m in batch)
        await trio.sleep(10)
        await writer.drain()
    gaps = [b - a for a, b in zip(store.attempts, store.attempts[1:], strict=False)]
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert store.batches == [[1, 2, 3, 4, 5]]
    assert all(m.settled == ["wpi"] * 6 + ["ack"] for m in batch)


async def test_poison_is_terminated_and_does_not_block_the_rest(clock) -> None:
    store, (send, receive) = FakeStore(), channel()
    writer = writer_for(store)
    poison = [FakeMsg(b"\x00garbage", 7), FakeMsg(b'{"event":"message","seq":2}', 8),
              FakeMsg(b'{"x":1}', 9)]
    good = msgs(1, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        send.send_nowait(poison[:2])
        send.send_nowait([poison[2], *good])
        await trio.sleep(1)
        await writer.drain()
    assert [m.settled for m in poison] == [["term"]] * 3
    assert store.batches == [[1, 2]] and all(m.settled == ["ack"] for m in good)


async def test_drain_flushes_the_batch_in_hand_at_once(clock) -> None:
    """Requirement R6.5: a draining writer stores what it holds before it stops."""
    store, (send, receive) = FakeStore(), channel()
    writer = EventWriter(store, batch_max=100, batch_wait=30.0, retry_base=0.1, retry_max=1.0)
    held = msgs(1, 4)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        send.send_nowait(held)
        await trio.sleep(1)
        assert store.batches == []
        started = trio.current_time()
        await writer.drain()
        assert trio.current_time() - started < 0.01
    assert store.batches == [[1, 2, 3, 4]] and all(m.settled == ["ack"] for m in held)
    send.send_nowait(msgs(5, 1))  # nothing takes messages after a drain
    assert store.batches == [[1, 2, 3, 4]]


async def test_drain_with_nothing_in_hand_returns(clock) -> None:
    store, (_send, receive) = FakeStore(), channel()
    writer = writer_for(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        await writer.drain()
    assert writer.done.is_set() and store.batches == []


async def test_drain_during_a_retry_still_writes_then_stops(clock) -> None:
    store, (send, receive) = FakeStore(failures=2), channel()
    writer = writer_for(store)
    held = msgs(1, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        send.send_nowait(held)
        await trio.sleep(WAIT + 0.01)
        await writer.drain()
    assert store.batches == [[1, 2]] and all(m.settled[-1] == "ack" for m in held)
