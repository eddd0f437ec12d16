"""A socket's outbound queue and writer: bounded (4408), batched writes, close semantics."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from libs.tokens import Claims
from services.gateway.connection import CLOSE_SLOW_CONSUMER, Connection
from services.gateway.outbox import Outbox

pytestmark = pytest.mark.timeout(10)


class RecordingSocket:
    def __init__(self, stall: float = 0.0):
        self.sent: list[str] = []
        self.stall = stall

    async def send_message(self, text: str) -> None:
        await trio.sleep(self.stall)
        self.sent.append(text)


def connection(ws: RecordingSocket, queue: int = 8) -> Connection:
    claims = Claims("u1", "d1", "s1", int(time.time()) + 3600)
    return Connection(ws, claims, queue)  # type: ignore[arg-type]


async def test_get_waits_for_put_and_returns_none_once_closed_and_drained() -> None:
    box = Outbox(4)
    got: list[str | None] = []

    async def reader() -> None:
        while (item := await box.get()) is not None:
            got.append(item)
        got.append(None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert box.put("a") and box.put("b")
        await trio.testing.wait_all_tasks_blocked()
        box.put("c")
        box.close()
    assert got == ["a", "b", "c", None]
    assert not box.put("d")


async def test_put_refuses_beyond_the_limit() -> None:
    box = Outbox(2)
    assert box.put("a") and box.put("b")
    assert not box.put("c") and not box.closed
    assert len(box) == 2


async def test_a_waiting_get_can_be_cancelled_and_waited_again() -> None:
    box = Outbox(2)
    with trio.move_on_after(0.01):
        await box.get()
    box.put("x")
    assert await box.get() == "x"


async def test_writer_sends_every_queued_frame_in_order() -> None:
    ws = RecordingSocket()
    conn = connection(ws)
    for i in range(5):
        conn.send_text(f"f{i}")
    conn.finish(1001, "going away")
    await conn.writer()
    assert ws.sent == [f"f{i}" for i in range(5)]
    assert conn.closed.is_set() and conn.close_code == 1001


async def test_a_full_queue_closes_with_4408() -> None:
    conn = connection(RecordingSocket(), queue=8)
    for i in range(9):
        conn.send_text(f"f{i}")
    assert conn.closed.is_set() and conn.close_code == CLOSE_SLOW_CONSUMER


async def test_no_frame_starts_after_a_close() -> None:
    ws = RecordingSocket(stall=0.05)
    conn = connection(ws)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.writer)
        for i in range(5):
            conn.send_text(f"f{i}")
        await trio.sleep(0.01)  # the first frame is being written
        conn.close(4401, "session ended")
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert ws.sent == ["f0"]  # the frame in hand got out whole, nothing after it


async def test_a_writer_runs_only_while_there_is_something_to_write(autojump_clock) -> None:
    from services.gateway.connection import WRITER_LINGER_S
    ws = RecordingSocket()
    conn = connection(ws)
    async with trio.open_nursery() as nursery:
        conn.nursery = nursery
        await trio.sleep(1)
        assert not nursery.child_tasks  # idle: no writer
        conn.send_text("a")
        await trio.sleep(1)
        assert ws.sent == ["a"] and len(nursery.child_tasks) == 1  # lingers
        await trio.sleep(WRITER_LINGER_S)
        assert not nursery.child_tasks
        conn.send_text("b")
        conn.finish(1001, "going away")
        await conn.closed.wait()
    assert ws.sent == ["a", "b"] and conn.close_code == 1001


async def test_finishing_an_idle_socket_closes_it(autojump_clock) -> None:
    conn = connection(RecordingSocket())
    async with trio.open_nursery() as nursery:
        conn.nursery = nursery
        conn.finish(1001, "going away")
        await conn.closed.wait()
    assert conn.close_code == 1001
