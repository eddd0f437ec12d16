"""Router rules without I/O: request validation, chat specs, fan-out grouping, reservations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import NatterjackError
from libs.presence import group_targets
from services.router import domain

ids = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)


def _send(**over):
    payload = {"sender_id": "u1", "sender_device_id": "d1", "client_msg_id": "c1",
               "chat_id": "chat1", "content": "hi"}
    payload.update(over)
    return payload


def test_a_valid_send_request_is_accepted_with_defaults():
    req = domain.send_request(_send(), 4096)
    assert (req.content_type, req.content_version, req.metadata) == ("text", None, None)


@pytest.mark.parametrize("override", [
    {"chat_id": "a.b"}, {"chat_id": "x\n"}, {"client_msg_id": ""}, {"content_type": "Bad"},
    {"content_version": 0}, {"metadata": [1]}, {"metadata": {"k": "v" * 5000}}, {"sender_id": "*"},
])
def test_bad_send_requests_are_refused_with_4000(override):
    with pytest.raises(NatterjackError) as refused:
        domain.send_request(_send(**override), 4096)
    assert refused.value.code == 4000


@settings(max_examples=100)
@given(creator=ids, others=st.lists(ids, max_size=12))
def test_group_spec_has_the_creator_as_owner_and_no_duplicates(creator, others):
    spec = domain.chat_spec({"creator_id": creator, "type": "group", "members": others}, 10_000)
    users = [u for u, _ in spec.members]
    assert users[0] == creator and spec.members[0][1] == "owner"
    assert len(users) == len(set(users)) and set(users) == {creator, *others}


@settings(max_examples=100)
@given(a=ids, b=ids)
def test_direct_chats_have_one_pair_key_whoever_creates_them(a, b):
    if a == b:
        return
    one = domain.chat_spec({"creator_id": a, "type": "direct", "members": [b]}, 10)
    other = domain.chat_spec({"creator_id": b, "type": "direct", "members": [a]}, 10)
    assert one.pair_key == other.pair_key


@settings(max_examples=100)
@given(presence=st.dictionaries(ids, st.dictionaries(ids, st.sampled_from(["gw-a", "gw-b", "gw-c"]),
                                                     max_size=4), max_size=10))
def test_each_device_is_targeted_once_through_its_gateway(presence):
    grouped = group_targets(presence)
    flat = [(t["user_id"], t["device_id"], gw) for gw, ts in grouped.items() for t in ts]
    expected = [(u, d, gw) for u, devices in presence.items() for d, gw in devices.items()]
    assert sorted(flat) == sorted(expected)


@settings(max_examples=100)
@given(seq=st.integers(1, 10**9), block=st.integers(1, 10_000))
def test_a_reservation_always_covers_the_number_handed_out(seq, block):
    reserved = domain.next_reservation(seq, block)
    assert not domain.reservation_needed(seq, reserved) and reserved - seq == block - 1


@settings(max_examples=100)
@given(st.integers(1, 10**9), st.integers(1, 10**6), st.integers(0, 2 * 10**6))
def test_the_next_block_is_reserved_ahead_from_half_way(start, block, used):
    """Reserving ahead starts once half of a block is used, and always before it is needed."""
    reserved = domain.next_reservation(start, block)
    seq = start + used
    if domain.reservation_needed(seq, reserved):
        assert domain.reservation_due(seq, reserved, block)
    if block > 1 and seq == start:
        assert not domain.reservation_due(seq, reserved, block)
    if used >= block - block // 2:  # past half of the block: reserve the next one
        assert domain.reservation_due(seq, reserved, block)
