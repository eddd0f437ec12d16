"""delivery-retry's projection rules: any order, any duplicates, any batching, same result."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.delivery_retry import domain
from services.delivery_retry.domain import Ack, Membership, Projection
from services.delivery_retry.errors import BadRequest, NotMember, UnknownChat

USERS = ["ann", "bob", "cy", "dee", "eve"]
CHATS = ["c1", "c2", "c3"]
users = st.sets(st.sampled_from(USERS), min_size=1, max_size=3)


# ---- generating chat histories ---------------------------------------------------------
def _event(chat_id: str, seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    base = {"chat_id": chat_id, "seq": seq, "ts": 1000 + seq}
    if kind in ("message", "void"):
        return {"event": kind, **base}
    return {"event": "chat_updated", "kind": kind, "actor_id": "ann", **base, **fields}


@st.composite
def created(draw: st.DrawFn, chat_id: str) -> dict[str, Any]:
    members = [{"user_id": u, "role": "member"} for u in sorted(draw(users))]
    if draw(st.booleans()):  # conventions shape: details.members
        details = {"type": "group", "name": None, "members": members}
        return _event(chat_id, 1, "created", details=details)
    return _event(chat_id, 1, "created", details={"type": "group"}, members=members)


@st.composite
def later(draw: st.DrawFn, chat_id: str, seq: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["message", "void", "member_added", "member_removed", "renamed"]))
    who = sorted(draw(users))
    if kind == "member_added":
        if len(who) == 1 and draw(st.booleans()):  # single-member shape
            return _event(chat_id, seq, kind, details={"user_id": who[0], "role": "member"})
        return _event(chat_id, seq, kind,
                      details={"members": [{"user_id": u, "role": "member"} for u in who]})
    if kind == "member_removed":
        if len(who) == 1 and draw(st.booleans()):
            return _event(chat_id, seq, kind, details={"user_id": who[0]})
        return _event(chat_id, seq, kind, details={"user_ids": who})
    if kind == "renamed":
        return _event(chat_id, seq, kind, details={"name": "n", "old_name": None})
    return _event(chat_id, seq, kind)


@st.composite
def history(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of 1..3 chats, each chat starting with created at seq 1, seq dense."""
    events: list[dict[str, Any]] = []
    for chat_id in CHATS[: draw(st.integers(1, len(CHATS)))]:
        events.append(draw(created(chat_id)))
        for seq in range(2, draw(st.integers(1, 15)) + 1):
            events.append(draw(later(chat_id, seq)))
    return events


def reference(events: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """The obvious model: apply each event once, per chat in seq order, with set add/remove."""
    last: dict[str, int] = {}
    members: dict[str, set[str]] = {}
    for event in sorted(events, key=lambda e: (e["chat_id"], e["seq"])):
        chat = event["chat_id"]
        last[chat] = event["seq"]
        current = members.setdefault(chat, set())
        details = event.get("details", {})
        if event.get("kind") == "created":
            current |= {m["user_id"] for m in details.get("members", event.get("members", []))}
        elif event.get("kind") == "member_added":
            current |= {m["user_id"] for m in details.get("members", [])}
            current |= {details["user_id"]} if "user_id" in details else set()
        elif event.get("kind") == "member_removed":
            current -= set(details.get("user_ids", [details.get("user_id")]))
    return last, members


def parse_all(events: list[dict[str, Any]]) -> list[domain.StreamEvent]:
    return [domain.parse_event(orjson.dumps(e), f"im.msg.{e['chat_id']}") for e in events]


def store_from_batches(batches: list[list[domain.StreamEvent]]) -> Projection:
    """What the tables hold after each batch's projection was merged in, batch by batch."""
    store = Projection()
    for batch in batches:
        store.merge(domain.project(batch))
    return store


def assert_matches(store: Projection, events: list[dict[str, Any]]) -> None:
    last, members = reference(events)
    assert store.last_seq == last
    for chat_id, expected in members.items():
        assert store.active_members(chat_id) == expected


# ---- properties --------------------------------------------------------------------------
@settings(max_examples=200)
@given(history(), st.data())
def test_any_order_duplicates_and_batching_give_the_in_order_projection(events, data):
    parsed = parse_all(events)
    replayed = parsed + data.draw(st.lists(st.sampled_from(parsed), max_size=20), label="dups")
    shuffled = data.draw(st.permutations(replayed), label="order")
    cuts = sorted(data.draw(st.sets(st.integers(0, len(shuffled)), max_size=8), label="cuts"))
    bounds = [0, *cuts, len(shuffled)]
    batches = [shuffled[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert_matches(store_from_batches(batches), events)


@settings(max_examples=200)
@given(history(), st.data())
def test_replaying_an_old_batch_after_newer_ones_changes_nothing(events, data):
    parsed = parse_all(events)
    cut = data.draw(st.integers(0, len(parsed)), label="cut")
    old, new = parsed[:cut], parsed[cut:]
    store = store_from_batches([old, new])
    before = (dict(store.last_seq), dict(store.members))
    store.merge(domain.project(old))  # a crash before the ack: JetStream redelivers it late
    store.merge(domain.project(new))
    assert (store.last_seq, store.members) == before
    assert_matches(store, events)


@settings(max_examples=100)
@given(history())
def test_one_row_per_chat_and_member_per_batch(events):
    projection = domain.project(parse_all(events))
    assert len(projection.chat_rows()) == len({e["chat_id"] for e in events})
    keys = [(c, u) for c, u, _, _ in projection.member_rows()]
    assert keys == sorted(set(keys))


memberships = st.builds(Membership, st.integers(1, 6), st.booleans())


@settings(max_examples=200)
@given(memberships, memberships, memberships)
def test_membership_merge_is_a_semilattice_join(a, b, c):
    merge = domain.merge_membership
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a
    assert merge(None, a) == a


acks = st.lists(st.builds(Ack, st.sampled_from(["u1", "u2"]), st.sampled_from(["d1", "d2"]),
                          st.sampled_from(["c1", "c2"]), st.integers(1, 50)), min_size=1)


@settings(max_examples=200)
@given(acks, st.data())
def test_cursor_is_the_highest_ack_whatever_the_order_and_batching(ack_list, data):
    shuffled = data.draw(st.permutations(ack_list))
    cut = data.draw(st.integers(0, len(shuffled)))
    cursors: dict[tuple[str, str, str], int] = {}
    for batch in (shuffled[:cut], shuffled[cut:], shuffled[:cut]):
        for key, seq in domain.merge_acks(batch).items():
            cursors[key] = domain.merge_cursor(cursors.get(key), seq)
    expected: dict[tuple[str, str, str], int] = {}
    for ack in ack_list:
        expected[ack.key] = max(expected.get(ack.key, 0), ack.seq)
    assert cursors == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200)
@given(history(), st.data())
def test_broken_events_are_unreadable_never_a_crash(events, data):
    event = dict(data.draw(st.sampled_from(events)))
    field = data.draw(st.sampled_from(["event", "chat_id", "seq", "details", "members", "kind"]))
    event[field] = data.draw(json_values)
    try:
        parsed = domain.parse_event(orjson.dumps(event))
    except domain.UnreadableEvent:
        return
    assert domain.is_seq(parsed.seq) and parsed.chat_id


# ---- examples ------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"event":"message","chat_id":"c","seq":0}',
                                  b'{"event":"message","chat_id":"c","seq":true}',
                                  b'{"event":"nope","chat_id":"c","seq":1}',
                                  b'{"event":"message","chat_id":"a.b","seq":1}',
                                  b'{"event":"chat_updated","kind":"created","chat_id":"c","seq":1}'])
def test_unreadable_examples(data):
    with pytest.raises(domain.UnreadableEvent):
        domain.parse_event(data)


def test_event_on_another_chats_subject_is_unreadable():
    with pytest.raises(domain.UnreadableEvent):
        domain.parse_event(orjson.dumps(_event("c1", 2, "message")), "im.msg.c2")


def test_removal_and_addition_in_one_event_means_removed():
    a, b = Membership(4, True), Membership(4, False)
    assert domain.merge_membership(a, b) == domain.merge_membership(b, a) == b


def test_judge_ack_order_of_checks():
    ack = Ack("u1", "d1", "c1", 5)
    assert isinstance(domain.judge_ack(ack, None, False), UnknownChat)
    assert isinstance(domain.judge_ack(ack, 10, False), NotMember)
    assert isinstance(domain.judge_ack(ack, 4, True), BadRequest)
    assert domain.judge_ack(ack, 5, True) is None


@pytest.mark.parametrize("payload", [
    {"user_id": "u", "device_id": "d", "chat_id": "c", "seq": 0},
    {"user_id": "u", "device_id": "d", "chat_id": "c", "seq": "3"},
    {"user_id": "u", "device_id": "d", "chat_id": "c", "seq": 3.0},
    {"user_id": "u", "device_id": "d", "chat_id": "c", "seq": True},
    {"user_id": "u", "device_id": "d", "seq": 3},
    {"user_id": "u u", "device_id": "d", "chat_id": "c", "seq": 3},
    {"acks": []},
    {"acks": [{"user_id": "u", "device_id": "d", "chat_id": "c"}]},
])
def test_malformed_acks(payload):
    with pytest.raises(BadRequest):
        domain.parse_acks(payload)


def test_single_and_batch_acks_parse():
    one = {"user_id": "u", "device_id": "d:1", "chat_id": "c", "seq": 3}
    assert domain.parse_acks(one) == ([Ack("u", "d:1", "c", 3)], False)
    assert domain.parse_acks({"acks": [one, one]}) == ([Ack("u", "d:1", "c", 3)] * 2, True)


def test_device_query():
    assert domain.parse_device_query({"user_id": "u", "device_id": "d"}).chat_id is None
    query = domain.parse_device_query({"user_id": "u", "device_id": "d", "chat_id": "c",
                                       "after_seq": 0})
    assert (query.chat_id, query.after_seq) == ("c", 0)
    for bad in ({"user_id": "u", "device_id": "d", "after_seq": 2},
                {"user_id": "u", "device_id": "d", "chat_id": "c", "after_seq": -1},
                {"user_id": "u", "device_id": "d", "chat_id": "c", "after_seq": False}):
        with pytest.raises(BadRequest):
            domain.parse_device_query(bad)
    with pytest.raises(BadRequest):
        domain.parse_device_query({"user_id": "u", "device_id": "d"}, chat_required=True)
