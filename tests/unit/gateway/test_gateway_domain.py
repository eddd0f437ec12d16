"""Gateway rules without I/O: frame parsing and the per-socket order of events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import NatterjackError
from services.gateway import domain


@pytest.mark.parametrize(("text", "code"), [
    ("{nope", 4000), ("[1]", 4000), ('{"type":"warp"}', 4002),
    ('{"type":"ack","chat_id":"c"}', 4000), ('{"type":"ping","x":1}', 4000),
])
def test_bad_frames_are_refused_with_their_code(text, code):
    with pytest.raises(NatterjackError) as refused:
        domain.parse_frame(text, 65536)
    assert refused.value.code == code


def test_oversize_frames_are_refused_before_parsing():
    with pytest.raises(NatterjackError) as refused:
        domain.parse_frame("x" * 70_000, 65536)
    assert refused.value.code == 4013


def test_tokens_come_from_the_header_or_the_query():
    assert domain.token_from("/ws", [(b"Authorization", b"Bearer abc")]) == "abc"
    assert domain.token_from("/ws?token=xyz", []) == "xyz"
    assert domain.token_from("/ws", [(b"authorization", b"Basic abc")]) is None


@settings(max_examples=200)
@given(stored=st.integers(0, 30), live=st.lists(st.integers(1, 40), max_size=40),
       split=st.integers(0, 40), after=st.integers(0, 10), data=st.data())
def test_catch_up_and_live_events_reach_the_socket_once_each_in_order(stored, live, split, after,
                                                                      data):
    """Live events may arrive before, during or after catch-up, repeated and out of order;
    history stores the chat's events in any order, so a page read during the catch-up can
    have holes. The socket sees each seq above the cursor at most once, always in
    increasing order, and every stored one by the time history holds them all."""
    storing = data.draw(st.permutations(range(after + 1, stored + 1)))
    reads = sorted(data.draw(st.lists(st.integers(0, len(storing)), max_size=4)))
    order = domain.ChatOrder()
    order.start_at(after)
    order.catching_up = True
    written = []
    for seq in live[:split]:
        written += order.offer(seq, seq)
    for upto in [*reads, len(storing)]:  # the catch-up's history reads, the last one whole
        for seq in sorted(storing[:upto]):
            if seq > order.delivered:
                written += order.from_history(seq, seq)
    written += order.finish_catch_up()
    for seq in live[split:]:
        written += order.offer(seq, seq)
    assert len(written) == len(set(written))
    assert written == sorted(written)
    assert all(seq > after for seq in written)
    assert set(range(after + 1, stored + 1)) <= set(written)


@settings(max_examples=200)
@given(total=st.integers(1, 40), data=st.data())
def test_out_of_order_and_missing_events_are_filled_from_history_in_order(total, data):
    """Any arrival order with repeats and losses: with gap fills from history the socket
    ends up with every event exactly once, in seq order."""
    arrivals = data.draw(st.lists(st.integers(1, total), max_size=3 * total))
    order = domain.ChatOrder()
    order.start_at(0)
    written = []
    for seq in arrivals:
        written += order.offer(seq, seq)
        while order.gap is not None:  # what the gap watcher does with history
            after, before = order.gap
            for missing in range(after + 1, before):
                written += order.offer(missing, missing)
    if order.held:
        written += order.skip_gap()
    for seq in range(order.delivered + 1, total + 1):  # the rest arrives eventually
        written += order.offer(seq, seq)
    assert written == list(range(1, total + 1))


def test_a_chat_with_no_known_start_settles_on_its_lowest_event():
    order = domain.ChatOrder()
    assert order.offer(7, "seven") == [] and order.offer(6, "six") == []
    assert order.settle() == ["six", "seven"]
    assert order.offer(8, "eight") == ["eight"]
    fresh = domain.ChatOrder()
    assert fresh.offer(1, "created") == ["created"]  # seq 1 needs no settling
