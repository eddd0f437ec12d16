"""The ack writer batches concurrent acks, answers each after its write, drains on close."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from libs.errors import Unavailable
from services.delivery_retry import domain
from services.delivery_retry.ack_writer import AckBatch, AckWriter
from services.delivery_retry.domain import Ack, AckOutcome
from services.delivery_retry.errors import Draining, UnknownChat


class FakeStore:
    """Cursors in a dict; acks for chat "gone" are refused; ``down`` fails every write."""

    def __init__(self) -> None:
        self.cursors: dict[tuple[str, str, str], int] = {}
        self.batches: list[int] = []
        self.down = False

    async def write_ack_batch(self, acks: Sequence[Ack], now_ms: int) -> AckBatch:
        await trio.sleep(0.001)
        self.batches.append(len(acks))
        if self.down:
            raise Unavailable("database unavailable")
        before = dict(self.cursors)
        for key, seq in domain.merge_acks(a for a in acks if a.chat_id != "gone").items():
            self.cursors[key] = domain.merge_cursor(self.cursors.get(key), seq)
        return AckBatch([UnknownChat("gone") if a.chat_id == "gone"
                         else AckOutcome(self.cursors[a.key], a.seq > before.get(a.key, 0))
                         for a in acks])


async def test_concurrent_acks_share_writes_and_each_gets_its_outcome():
    store = FakeStore()
    writer = AckWriter(store, window_s=0.005)
    results: dict[int, object] = {}

    async def one(seq: int) -> None:
        chat = "gone" if seq % 10 == 0 else "c1"
        [results[seq]] = await writer.submit([Ack("u1", "d1", chat, seq)])

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        async with trio.open_nursery() as clients:
            for seq in range(1, 201):
                clients.start_soon(one, seq)
        await writer.close()
    assert sum(store.batches) == 200 and len(store.batches) < 50
    assert store.cursors == {("u1", "d1", "c1"): 199}
    assert all(isinstance(results[s], UnknownChat) for s in range(10, 201, 10))
    assert all(isinstance(results[s], AckOutcome) for s in range(1, 201) if s % 10)


async def test_a_failed_write_answers_every_waiting_ack_with_unavailable():
    store = FakeStore()
    store.down = True
    writer = AckWriter(store, window_s=0.005)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        outcomes = await writer.submit([Ack("u1", "d1", "c1", 1), Ack("u1", "d2", "c1", 2)])
        await writer.close()
    assert all(isinstance(o, Unavailable) for o in outcomes)


async def test_close_writes_what_is_queued_then_refuses_new_acks():
    store = FakeStore()
    writer = AckWriter(store, window_s=0.05)
    outcome: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)

        async def late_ack() -> None:
            outcome.extend(await writer.submit([Ack("u1", "d1", "c1", 7)]))

        nursery.start_soon(late_ack)
        await trio.sleep(0.001)  # queued, still inside the collection window
        await writer.close()
        with pytest.raises(Draining):
            await writer.submit([Ack("u1", "d1", "c1", 8)])
    assert outcome == [AckOutcome(7, True)]
    assert store.cursors == {("u1", "d1", "c1"): 7}
