"""The SDK's pure ordering logic: dedup, gap detection and filling, ack coalescing, backoff."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from natterjack_client._ordering import AckCoalescer, Gap, ReconnectPolicy, SeqTracker

EXAMPLES = settings(max_examples=200, deadline=None)


@st.composite
def arrivals(draw: st.DrawFn, complete: bool = True) -> tuple[int, list[int]]:
    """(last seq, the seqs 1..last in some order, with duplicates, some left out unless complete)."""
    last = draw(st.integers(1, 40))
    kept = list(range(1, last + 1)) if complete else draw(
        st.lists(st.integers(1, last), max_size=2 * last))
    repeats = draw(st.lists(st.sampled_from(kept), max_size=last)) if kept else []
    return last, draw(st.permutations(kept + repeats))


def feed(tracker: SeqTracker[int], seqs: list[int]) -> tuple[list[int], list[Gap]]:
    ready: list[int] = []
    gaps: list[Gap] = []
    for seq in seqs:
        offer = tracker.offer("c", seq, seq)
        ready += offer.ready
        gaps += [offer.gap] if offer.gap else []
    return ready, gaps


@EXAMPLES
@given(arrivals())
def test_every_event_comes_out_once_in_seq_order(case: tuple[int, list[int]]) -> None:
    last, seqs = case
    tracker: SeqTracker[int] = SeqTracker({"c": 0})
    ready, _ = feed(tracker, seqs)
    assert ready == list(range(1, last + 1))
    assert tracker.missing("c") is None and tracker.held("c") == last


@EXAMPLES
@given(arrivals(complete=False))
def test_a_hole_stops_the_order_and_is_reported_as_the_missing_range(case: tuple[int, list[int]]) -> None:
    _, seqs = case
    tracker: SeqTracker[int] = SeqTracker({"c": 0})
    ready, gaps = feed(tracker, seqs)
    contiguous = 0
    while contiguous + 1 in seqs:
        contiguous += 1
    assert ready == list(range(1, contiguous + 1))
    above = [s for s in seqs if s > contiguous]
    expected = Gap("c", contiguous, min(above)) if above else None
    assert tracker.missing("c") == expected
    assert expected is None or gaps[-1] == expected  # the current hole was the last reported
    assert len(gaps) == len(set(gaps))  # a range is reported once


@EXAMPLES
@given(arrivals(complete=False))
def test_filling_the_reported_gaps_completes_the_order(case: tuple[int, list[int]]) -> None:
    """What the session does: page each reported range from history into the tracker."""
    _, seqs = case
    tracker: SeqTracker[int] = SeqTracker({"c": 0})
    ready, _ = feed(tracker, seqs)
    while (gap := tracker.missing("c")) is not None:
        more, _ = feed(tracker, list(range(gap.after_seq + 1, gap.before_seq)))
        ready += more
    assert ready == list(range(1, max(seqs, default=0) + 1))


@EXAMPLES
@given(arrivals(complete=False), st.integers(0, 45))
def test_skipping_what_retention_deleted_releases_what_follows(case: tuple[int, list[int]], upto: int) -> None:
    _, seqs = case
    tracker: SeqTracker[int] = SeqTracker({"c": 0})
    ready, _ = feed(tracker, seqs)
    ready += tracker.skip_to("c", upto).ready
    held = tracker.held("c")
    assert ready == sorted(set(ready)) and held >= upto
    assert all(s <= held for s in ready)
    # what waited above the skipped range came out, up to the next missing seq
    assert {s for s in seqs if upto < s <= held} <= set(ready) and held + 1 not in seqs


@EXAMPLES
@given(st.integers(1, 1000), st.lists(st.integers(1, 5), max_size=10))
def test_an_unknown_chat_starts_at_its_first_event(first: int, steps: list[int]) -> None:
    tracker: SeqTracker[int] = SeqTracker()
    seqs = [first + sum(steps[:i]) for i in range(len(steps) + 1)]
    ready, gaps = feed(tracker, seqs)
    assert ready[0] == first and all(g.after_seq >= first for g in gaps)


ack_ops = st.lists(st.one_of(
    st.tuples(st.just("hand"), st.sampled_from("abc"), st.integers(1, 50)),
    st.tuples(st.just("tick"), st.floats(0, 0.05), st.just(0))), max_size=60)


@EXAMPLES
@given(ack_ops)
def test_acks_are_cumulative_coalesced_and_never_ahead(ops: list[tuple[str, object, int]]) -> None:
    acks, now, handed, sent = AckCoalescer(interval_s=0.02), 0.0, {}, {}
    flushes: list[float] = []
    for op, arg, seq in ops:
        if op == "hand":
            acks.handed(str(arg), seq)
            handed[arg] = max(seq, handed.get(arg, 0))
            continue
        now += float(arg)  # type: ignore[arg-type]
        due = acks.due(now)
        flushes += [now] if due else []
        for chat, position in due:
            assert sent.get(chat, 0) < position == handed[chat]  # moves forward, to what was handed
            sent[chat] = position
    assert all(b - a >= 0.02 for a, b in zip(flushes, flushes[1:], strict=False))
    assert dict(acks.due(now + 1)) == {c: s for c, s in handed.items() if s > sent.get(c, 0)}


@EXAMPLES
@given(st.integers(0, 200), st.floats(0.01, 2), st.floats(0.1, 60))
def test_backoff_has_full_jitter_below_a_bounded_ceiling(attempt: int, initial: float, cap: float) -> None:
    policy = ReconnectPolicy(initial_s=initial, max_s=cap)
    ceiling = min(cap, initial * 2 ** min(attempt, 64))
    assert policy.delay(attempt, lambda low, high: high) == ceiling
    assert policy.delay(attempt, lambda low, high: low) == 0
    assert 0 <= policy.delay(attempt) <= cap
    assert not policy.gives_up(attempt) and ReconnectPolicy(max_attempts=3).gives_up(3)


def test_backoff_doubles_from_its_first_delay_up_to_its_cap() -> None:
    policy = ReconnectPolicy(initial_s=0.25, max_s=60, max_attempts=3)
    assert [policy.delay(n, lambda low, high: high) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert ReconnectPolicy(initial_s=0.25, max_s=1.5).delay(10, lambda low, high: high) == 1.5
    assert not policy.gives_up(2) and policy.gives_up(3)
