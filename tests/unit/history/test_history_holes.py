"""The hole tracker (pure, property-tested against a model) and the hole filler's timing on
a virtual clock, with a fake store and a fake router on a fake bus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.bus import Bus
from services.gateway.config import load as load_gateway
from services.history.config import load as load_history
from services.history.hole_filler import HoleFiller
from services.history.holes import HoleTracker
from services.history.state import StoredBody
from services.history.storage import HistoryStorage
from services.history.writes import ChatWrite, WriteResult
from services.router.config import load as load_router

AFTER = 5.0


# ---- the tracker ------------------------------------------------------------------------
@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[int, float]]:
    """Seqs of one chat in the order history stores them (some never), each after a pause."""
    top = draw(st.integers(1, 40))
    lost = draw(st.sets(st.integers(1, top - 1))) if top > 1 else set()
    order = draw(st.permutations([s for s in range(1, top + 1) if s not in lost]))
    pauses = draw(st.lists(st.sampled_from([0.0, 0.5, 2.0, 6.0]), min_size=len(order),
                           max_size=len(order)))
    return list(zip(order, pauses, strict=True))


def model(seen: list[tuple[int, float]]) -> dict[int, float]:
    """Missing seq -> when a higher one was first stored, above the first seq seen (what
    lies below it is the storage scan's business)."""
    first, high, noticed, stored = seen[0][0], seen[0][0], {}, set()
    for seq, at in seen:
        for missing in range(high + 1, seq):
            noticed[missing] = at
        high, stored = max(high, seq), stored | {seq}
    return {s: at for s, at in noticed.items() if s not in stored and s > first}


@settings(max_examples=300, deadline=None)
@given(arrivals(), st.floats(0, 40))
def test_candidates_are_the_numbers_missing_below_the_highest(arrived, extra) -> None:
    tracker, now, seen = HoleTracker(AFTER), 0.0, []
    for seq, pause in arrived:
        now += pause
        tracker.observe("c", seq, now)
        seen.append((seq, now))
    expected = model(seen)
    assert tracker.missing("c") == sorted(expected) and len(tracker) == len(expected)
    due_at = now + extra
    assert tracker.due(due_at, 10_000).get("c", []) == sorted(
        s for s, at in expected.items() if at + AFTER <= due_at)
    first = arrived[0][0]
    assert tracker.to_scan(10) == ([("c", first)] if first > 1 else []) and tracker.to_scan(10) == []


@settings(max_examples=200, deadline=None)
@given(arrivals(), st.data())
def test_stored_or_reported_candidates_leave_or_wait_again(arrived, data) -> None:
    tracker = HoleTracker(AFTER)
    for seq, _ in arrived:
        tracker.observe("c", seq, 0.0)
    missing = tracker.missing("c")
    stored = data.draw(st.sets(st.sampled_from(missing)) if missing else st.just(set()))
    tracker.stored("c", stored)
    left = [s for s in missing if s not in stored]
    tracker.retry("c", left, 10.0)
    assert tracker.missing("c") == left and len(tracker) == len(left)
    assert tracker.due(10.0 + AFTER - 0.1, 10_000) == {}
    assert tracker.due(10.0 + AFTER, 10_000) == ({"c": left} if left else {})


def test_restored_numbers_below_the_first_seen_wait_hole_after() -> None:
    tracker = HoleTracker(AFTER)
    tracker.observe("c", 10, 0.0)
    assert tracker.to_scan(5) == [("c", 10)]
    tracker.restore("c", [3, 7, 12], 1.0)  # 12 is not below the highest: ignored
    assert tracker.missing("c") == [3, 7] and tracker.due(1.0 + AFTER - 0.01, 100) == {}
    assert tracker.due(1.0 + AFTER, 100) == {"c": [3, 7]}
    tracker.observe("c", 7, 2.0)
    assert tracker.missing("c") == [3]


def test_memory_is_bounded_and_losses_are_counted() -> None:
    tracker = HoleTracker(AFTER, max_missing=5, max_chats=2)
    tracker.observe("a", 1, 0.0)
    tracker.observe("a", 1_000_000_000, 0.0)  # a huge jump costs max_missing, not a billion
    assert len(tracker) == 5 and tracker.dropped == 1_000_000_000 - 2 - 5
    assert tracker.missing("a") == [2, 3, 4, 5, 6]
    tracker.observe("b", 1, 0.0)
    tracker.observe("c", 1, 0.0)  # evicts "a", the least recently seen, and its candidates
    assert tracker.missing("a") == [] and len(tracker) == 0
    tracker.observe("a", 9, 0.0)  # back: its past is looked at again
    assert ("a", 9) in tracker.to_scan(10)


def test_due_is_limited_in_all() -> None:
    tracker = HoleTracker(AFTER)
    for chat in ("a", "b"):
        tracker.observe(chat, 1, 0.0)
        tracker.observe(chat, 5, 0.0)
    assert tracker.due(AFTER, 5) == {"a": [2, 3, 4], "b": [2, 3]}


# ---- the filler on a virtual clock ----------------------------------------------------
class FakeStorage:
    def __init__(self) -> None:
        self.rows: set[int] = set()

    async def stored_seqs(self, chat_id: str, seqs: list[int]) -> set[int]:
        return self.rows & set(seqs)

    async def missing_below(self, chat_id: str, below: int, span: int) -> list[int]:
        return [s for s in range(max(1, below - span), below) if s not in self.rows]


@dataclass
class Reply:
    data: bytes


class FakeRouter:
    """Answers im.router.holes like the router would (a bus with one responder)."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, list[int]]] = []

    async def request(self, subject: str, data: bytes, *, timeout: float, **_: Any) -> Reply:
        assert subject == "im.router.holes"
        body = orjson.loads(data)
        self.asked.append((trio.current_time(), body["seqs"]))
        return Reply(orjson.dumps({"ok": {"voided": len(body["seqs"])}}))


def written(storage: FakeStorage, filler: HoleFiller, *seqs: int) -> None:
    storage.rows |= set(seqs)
    filler.observe(WriteResult(len(seqs), [ChatWrite("c", max(seqs), [StoredBody(s, "{}") for s in seqs])]))


@pytest.fixture
def clock(autojump_clock):
    return autojump_clock


async def test_a_hole_is_reported_after_hole_after_and_again_until_voided(clock) -> None:
    storage, router = FakeStorage(), FakeRouter()
    filler = HoleFiller(HoleTracker(AFTER), cast(HistoryStorage, storage), cast(Bus, router),
                        check_s=0.5, scan=100, timeout=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(filler.run)
        start = trio.current_time()
        written(storage, filler, 1, 2, 4, 5)
        await trio.sleep(AFTER - 0.6)
        assert router.asked == []  # a live router's own publish or void has until then
        await trio.sleep(1.2)
        assert [seqs for _, seqs in router.asked] == [[3]]
        assert AFTER <= router.asked[0][0] - start <= AFTER + 0.5
        await trio.sleep(AFTER)  # the void never came (that router died too): asked again
        assert [seqs for _, seqs in router.asked] == [[3], [3]]
        written(storage, filler, 3)  # the void is stored
        await trio.sleep(3 * AFTER)
        assert len(router.asked) == 2 and len(filler.tracker) == 0
        nursery.cancel_scope.cancel()


async def test_a_candidate_another_replica_stored_is_not_reported(clock) -> None:
    storage, router = FakeStorage(), FakeRouter()
    filler = HoleFiller(HoleTracker(AFTER), cast(HistoryStorage, storage), cast(Bus, router),
                        check_s=0.5, scan=100, timeout=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(filler.run)
        written(storage, filler, 1, 3)
        storage.rows.add(2)  # written by another history replica: never seen here
        await trio.sleep(3 * AFTER)
        assert router.asked == [] and len(filler.tracker) == 0
        nursery.cancel_scope.cancel()


async def test_after_a_start_holes_below_the_first_event_are_found_in_storage(clock) -> None:
    storage, router = FakeStorage(), FakeRouter()
    storage.rows |= {1, 2, 4, 5}  # stored before this process started
    filler = HoleFiller(HoleTracker(AFTER), cast(HistoryStorage, storage), cast(Bus, router),
                        check_s=0.5, scan=100, timeout=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(filler.run)
        written(storage, filler, 6)
        await trio.sleep(AFTER + 1.1)
        assert [seqs for _, seqs in router.asked] == [[3]]
        nursery.cancel_scope.cancel()


# ---- the defaults, across services -------------------------------------------------------
def test_default_hole_wait_outlasts_a_live_router_and_ends_before_the_gap_wait() -> None:
    """A live router's publish or void of a number lands before history reports it, and the
    void history has stored reaches gateways before they skip the number."""
    history, router, gateway = load_history({}), load_router({}), load_gateway({})
    assert router.publish_deadline_s + router.void_grace_s < history.hole_after_s
    assert history.hole_after_s + history.hole_check_s < gateway.gap_wait_s
