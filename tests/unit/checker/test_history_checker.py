"""The history checker: valid runs pass, one injected fault shows in exactly its category."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.events import to_frame
from tests.checker import (
    DUPLICATED,
    LOST,
    MISMATCH,
    OUT_OF_ORDER,
    Device,
    Expectations,
    Recorder,
    StoredEvent,
    check,
)

from .faults import FAULTS
from .runs import World, worlds

EXAMPLES = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@EXAMPLES
@given(worlds())
def test_a_valid_run_is_ok(world: World):
    report = check(world.run(), world.stored, world.expectations())
    assert report.ok, report.summary()


@pytest.mark.parametrize("fault", list(FAULTS))
@EXAMPLES
@given(world=worlds(), rnd=st.randoms(use_true_random=False))
def test_one_fault_is_reported_in_exactly_its_category(fault: str, world: World, rnd: random.Random):
    category, inject = FAULTS[fault]
    inject(world, rnd)
    report = check(world.run(), world.stored, world.expectations())
    assert report.failing == {category}, report.summary()


# ---- examples of the finer points ------------------------------------------------------------

ANN, BEN = Device("ann", "phone"), Device("ben", "laptop")


def _chat(*events: dict) -> list[StoredEvent]:
    created = {"event": "chat_updated", "chat_id": "c", "seq": 1, "ts": 1, "kind": "created",
               "details": {"members": [{"user_id": "ann", "role": "owner"},
                                       {"user_id": "ben", "role": "member"}]}}
    return [StoredEvent.from_body(e) for e in (created, *events)]


def _message(seq: int, client_id: str, content: str, message_id: str | None = None) -> dict:
    return {"event": "message", "chat_id": "c", "seq": seq, "ts": seq, "sender_id": "ann",
            "message_id": message_id or f"id{seq}", "client_msg_id": client_id,
            "content_type": "text", "content": content, "metadata": None}


def _ann_sends(recorder: Recorder, seq: int, client_id: str, content: str) -> None:
    recorder.sent(ANN, {"type": "send_message", "id": client_id, "chat_id": "c", "content": content})
    recorder.observe(ANN, {"type": "message_ack", "id": client_id, "chat_id": "c",
                           "message_id": f"id{seq}", "seq": seq, "ts": seq})


def test_redeliveries_are_counted_not_faults_and_the_ack_holds_the_senders_seq():
    stored = _chat(_message(2, "a", "hi"))
    recorder = Recorder()
    _ann_sends(recorder, 2, "a", "hi")
    for body in [stored[0].body, stored[1].body, stored[0].body, stored[1].body]:
        recorder.observe(BEN, to_frame(dict(body)))
    recorder.observe(ANN, to_frame(dict(stored[0].body)))
    report = check(recorder, stored, Expectations(complete=[ANN, BEN]))
    assert report.ok and report.redeliveries == 2, report.summary()


def test_an_own_message_repeated_after_its_ack_is_a_repeat_not_a_late_arrival():
    # kill -9 of a gateway: ann got the ack of seq 2 and then seq 3 on her old socket; her
    # cursor (1) never reached delivery-retry, so the catch-up on her new socket sends 2 and
    # 3 again. She held 2 since its ack: both are repeats, not 2 arriving after 3.
    ben_says = {**_message(3, "b", "yo"), "sender_id": "ben"}
    stored = _chat(_message(2, "a", "hi"), ben_says)
    recorder = Recorder()
    recorder.observe(ANN, to_frame(dict(stored[0].body)))
    _ann_sends(recorder, 2, "a", "hi")
    for seq in (3, 2, 3):
        recorder.observe(ANN, to_frame(dict(stored[seq - 1].body)))
    report = check(recorder, stored, Expectations(complete=[ANN]))
    assert report.ok and report.redeliveries == 2, report.summary()


def test_an_own_message_that_comes_before_its_ack_still_keeps_its_place_in_the_order():
    ben_says = {**_message(3, "b", "yo"), "sender_id": "ben"}
    stored = _chat(_message(2, "a", "hi"), ben_says)
    late = Recorder()  # the event of seq 2 itself arrives after 3, its ack later still
    late.sent(ANN, {"type": "send_message", "id": "a", "chat_id": "c", "content": "hi"})
    for seq in (1, 3, 2):
        late.observe(ANN, to_frame(dict(stored[seq - 1].body)))
    late.observe(ANN, {"type": "message_ack", "id": "a", "chat_id": "c", "message_id": "id2",
                       "seq": 2, "ts": 2})
    report = check(late, stored, Expectations(complete=[ANN]))
    assert report.counts[OUT_OF_ORDER] == 1 and report.failing == {OUT_OF_ORDER}
    other = Recorder()  # another member's device holds nothing by ann's ack
    _ann_sends(other, 2, "a", "hi")
    for seq in (1, 3, 2):
        other.observe(BEN, to_frame(dict(stored[seq - 1].body)))
    assert check(other, stored, Expectations(complete=[BEN])).failing == {OUT_OF_ORDER}


def test_fetched_history_counts_for_completeness_but_not_for_order():
    stored = _chat(_message(2, "a", "hi"), _message(3, "b", "yo"))
    recorder = Recorder()
    for seq in (1, 3):
        recorder.observe(BEN, to_frame(dict(stored[seq - 1].body)))
    recorder.received(BEN, {**stored[1].body, "type": "message"}, live=False)  # a page item
    assert check(recorder, stored, Expectations(complete=[BEN])).ok
    recorder.observe(BEN, to_frame(dict(stored[1].body)))  # live after 3: late, counted once
    report = check(recorder, stored, Expectations(complete=[BEN]))
    assert report.ok and report.redeliveries == 1


def test_a_joiner_is_held_to_events_after_its_join_only():
    joined = {"event": "chat_updated", "chat_id": "c", "seq": 3, "ts": 3, "kind": "member_added",
              "details": {"members": [{"user_id": "cat", "role": "member"}]}}
    stored = _chat(_message(2, "a", "before"), joined, _message(4, "b", "after"))
    cat = Device("cat", "tablet")
    recorder = Recorder()
    assert check(recorder, stored, Expectations(complete=[cat])).counts[LOST] == 1  # seq 4
    recorder.observe(cat, to_frame(dict(stored[3].body)))
    assert check(recorder, stored, Expectations(complete=[cat])).ok


def test_one_send_as_two_messages_and_one_message_at_two_seqs_are_duplicates():
    stored = _chat(_message(2, "a", "hi"), _message(3, "a", "hi", message_id="id3"))
    recorder = Recorder()
    _ann_sends(recorder, 2, "a", "hi")
    recorder.observe(ANN, {"type": "message_ack", "id": "a", "chat_id": "c", "message_id": "id2",
                           "seq": 3, "ts": 3})
    report = check(recorder, stored)
    assert report.counts[DUPLICATED] == 2 and report.failing == {DUPLICATED}, report.summary()


def test_a_message_stored_at_another_seq_than_acked_is_a_mismatch():
    stored = _chat({"event": "void", "chat_id": "c", "seq": 2, "ts": 2}, _message(3, "a", "hi", "id2"))
    recorder = Recorder()
    _ann_sends(recorder, 2, "a", "hi")
    report = check(recorder, stored)
    assert report.failing == {MISMATCH} and "acked at seq 2" in report.summary()


def test_summary_names_the_first_examples_and_assert_ok_raises_it():
    stored = _chat(_message(2, "a", "hi"), _message(3, "b", "yo"))
    recorder = Recorder()
    for seq in (1, 3, 2):
        recorder.observe(BEN, to_frame(dict(stored[seq - 1].body)))
    report = check(recorder, stored)
    assert report.failing == {OUT_OF_ORDER}
    assert "out_of_order (1):" in report.summary() and "seq 2" in report.summary()
    with pytest.raises(AssertionError, match="history check FAILED"):
        report.assert_ok()
