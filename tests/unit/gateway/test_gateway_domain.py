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
       split=st.integers(0, 40), after=st.integers(0, 10))
def test_catch_up_and_live_events_reach_the_socket_once_each_in_order(stored, live, split, after):
    """Live events may arrive before, during or after catch-up, repeated and out of order;
    the socket sees each seq above the cursor once, catch-up ones in order, and nothing
    at or below what it already has."""
    order = domain.ChatOrder(catching_up=True)
    written = []
    for seq in live[:split]:
        written += order.offer(seq, seq)
    for seq in range(after + 1, stored + 1):  # catch-up from history
        if seq > order.delivered:
            written.append(seq)
            order.caught_up_to(seq)
    written += order.finish_catch_up()
    for seq in live[split:]:
        written += order.offer(seq, seq)
    assert len(written) == len(set(written))
    assert written == sorted(written)
