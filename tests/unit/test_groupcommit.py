"""libs.groupcommit without a database: concurrent submits share a write, a failed write
fails each of its waiters, and close() writes every queued write-behind item."""

from __future__ import annotations

import pytest
import trio

from libs.errors import Unavailable
from libs.groupcommit import GroupCommit

pytestmark = pytest.mark.timeout(10)


async def test_concurrent_submits_are_written_together_with_their_own_outcomes() -> None:
    batches: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        await trio.sleep(0.01)  # the next submits queue while this one is written
        return [item * 10 for item in items]
    writer, answers = GroupCommit[int]("t", write), {}

    async def one(item: int) -> None:
        answers[item] = await writer.submit(item)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        async with trio.open_nursery() as sends:
            for item in range(20):
                sends.start_soon(one, item)
        await writer.close()
    assert answers == {item: item * 10 for item in range(20)}
    assert len(batches) < 20 and sorted(i for b in batches for i in b) == list(range(20))


async def test_a_failed_write_fails_every_waiter_and_the_writer_goes_on() -> None:
    async def write(items: list[int]) -> list[int]:
        if 0 in items:
            raise Unavailable("away")
        return items
    writer = GroupCommit[int]("t", write)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with pytest.raises(Unavailable):
            await writer.submit(0)
        assert await writer.submit(1) == 1
        await writer.close()
    with pytest.raises(Unavailable):  # closed: refused as unavailable, never hangs
        await writer.submit(2)


async def test_close_writes_every_queued_write_behind_item() -> None:
    written: list[int] = []

    async def write(items: list[int]) -> list[None]:
        written.extend(items)
        return [None] * len(items)
    writer = GroupCommit[int]("t", write, max_batch=3, window_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        assert all(writer.put_nowait(item) for item in range(10))
        await writer.close()
    assert written == list(range(10)) and not writer.put_nowait(11)
