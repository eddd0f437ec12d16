"""history's pure pieces: stream events to rows, membership changes, page items, requests."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.events import to_page_item
from services.history.domain import (
    Access,
    MemberChange,
    PoisonEvent,
    backoff_s,
    decode_event,
    member_changes,
    page_item_json,
    parse_get_request,
    parse_page_request,
    require_member,
)
from services.history.errors import BadRequest, NotMember, UnknownChat


def message(seq: int = 2, **extra) -> dict:
    event = {"event": "message", "chat_id": "c1", "seq": seq, "ts": 1700000000000,
             "message_id": "01HZX3Q5T7V9W1Y3Z5A7C9E1G3", "sender_id": "u1",
             "sender_device_id": "d1", "client_msg_id": "m-1", "content_type": "text",
             "content_version": 1, "content": "hi", "metadata": None}
    event.update(extra)
    return event


# ---- decode_event ------------------------------------------------------------------------
def test_decode_message_copies_columns_and_keeps_body_verbatim() -> None:
    data = orjson.dumps(message())
    row = decode_event(data)
    assert row.columns() == ("c1", 2, "message", "01HZX3Q5T7V9W1Y3Z5A7C9E1G3", "u1", "d1", "m-1",
                             "text", 1, data.decode(), 1700000000000, "hi")
    assert row.member_changes == ()


def test_decode_keeps_the_exact_text_even_when_not_canonical() -> None:
    data = b'{ "seq": 3, "chat_id": "c1", "event": "void", "ts": 5, "n": 1.50 }'
    assert decode_event(data).body == data.decode()


@pytest.mark.parametrize("data", [
    b"not json", b"[1,2]", b'"x"', b"\xff\xfe", b'{"x":1}',
    b'{"event":"message","seq":1}', b'{"event":"message","chat_id":"c"}',
    b'{"event":"message","chat_id":"c","seq":0}', b'{"event":"message","chat_id":"c","seq":"1"}',
    b'{"event":"message","chat_id":"c","seq":true}', b'{"event":"message","chat_id":"c","seq":1.0}',
    b'{"event":"message","chat_id":"","seq":1}', b'{"chat_id":"c","seq":1}',
    b'{"event":"message","chat_id":"' + b"c" * 65 + b'","seq":1}',
    b'{"event":"' + b"e" * 25 + b'","chat_id":"c","seq":1}',
    b'{"event":"message","chat_id":"c","seq":99999999999999999999}',
])
def test_unstorable_messages_are_poison(data: bytes) -> None:
    with pytest.raises(PoisonEvent):
        decode_event(data)


def test_columns_that_would_not_fit_become_null() -> None:
    row = decode_event(orjson.dumps(message(message_id="m" * 129, sender_id=7, content_version=2**40,
                                            content_type=None, ts="soon")))
    assert (row.message_id, row.sender_id, row.content_version, row.content_type, row.ts) == (
        None, None, None, None, 0)


def test_only_messages_fill_the_unique_message_id_column() -> None:
    event = {"event": "void", "chat_id": "c1", "seq": 4, "ts": 1, "message_id": "x"}
    assert decode_event(orjson.dumps(event)).message_id is None


# ---- membership --------------------------------------------------------------------------
def chat_updated(kind: str, details: dict, **extra) -> dict:
    return {"event": "chat_updated", "chat_id": "c1", "seq": 5, "ts": 1, "kind": kind,
            "actor_id": "u1", "details": details, **extra}


def changes(event: dict) -> set[tuple[str, bool]]:
    found = member_changes(event, "c1", 5)
    assert all(c.chat_id == "c1" and c.seq == 5 for c in found)
    return {(c.user_id, c.is_member) for c in found}


def test_created_and_member_added_join_their_members() -> None:
    created = chat_updated("created", {"type": "group", "name": None, "members": [
        {"user_id": "u1", "role": "owner"}, {"user_id": "u2", "role": "member"}]})
    assert changes(created) == {("u1", True), ("u2", True)}
    added = chat_updated("member_added", {"members": [{"user_id": "u3", "role": "member"}]})
    assert changes(added) == {("u3", True)}


def test_member_removed_leaves() -> None:
    assert changes(chat_updated("member_removed", {"user_ids": ["u2", "u3"]})) == {
        ("u2", False), ("u3", False)}


def test_schema_shapes_single_user_id_and_full_member_list() -> None:
    added = chat_updated("member_added", {"user_id": "u3", "role": "member"},
                         members=[{"user_id": "u1", "role": "owner"}, {"user_id": "u3", "role": "member"}])
    assert changes(added) == {("u1", True), ("u3", True)}
    removed = chat_updated("member_removed", {"user_id": "u3", "left": True},
                           members=[{"user_id": "u1", "role": "owner"}])
    assert changes(removed) == {("u1", True), ("u3", False)}


def test_other_events_and_kinds_change_nobody() -> None:
    assert changes(message()) == set()
    assert changes(chat_updated("renamed", {"name": "x", "old_name": None})) == set()
    assert changes(chat_updated("created", {"members": "nope"})) == set()
    assert changes(chat_updated("member_removed", {"user_ids": [None, 3, ""]})) == set()


def test_decode_carries_membership_changes() -> None:
    data = orjson.dumps(chat_updated("member_added", {"members": [{"user_id": "u9", "role": "member"}]}))
    assert decode_event(data).member_changes == (MemberChange("c1", "u9", True, 5),)


# ---- page items --------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(content=json_values, metadata=st.none() | st.dictionaries(st.text(max_size=8), json_values,
                                                                  max_size=4),
       kind=st.sampled_from(["message", "chat_updated", "message_updated", "void"]))
def test_spliced_item_is_exactly_the_encoded_page_item(content, metadata, kind) -> None:
    body = orjson.dumps({"event": kind, "chat_id": "c", "seq": 3, "ts": 1, "content": content,
                         "metadata": metadata})
    assert page_item_json(body) == orjson.dumps(to_page_item(orjson.loads(body)))


@pytest.mark.parametrize("body", [
    json.dumps(message(content={"z": 1, "a": [1.5, None, "é😀"]})),       # spaces: parse path
    orjson.dumps({"chat_id": "c", "event": "void", "seq": 1, "ts": 1}).decode(),  # event not first
    orjson.dumps(message(content={"event": "inner", "b": {"y": 0, "x": -0.0}})).decode(),
    orjson.dumps({"event": "void", "chat_id": "c", "seq": 1, "ts": 1}).decode(),
])
def test_every_path_gives_the_page_item_with_key_order_kept(body: str) -> None:
    item = orjson.loads(page_item_json(body))
    expected = to_page_item(json.loads(body))
    assert item == expected
    assert json.dumps(item) == json.dumps(expected)  # same key order, nested too


def test_splice_keeps_number_spelling_byte_for_byte() -> None:
    body = b'{"event":"message","chat_id":"c","seq":2,"content":{"b":1.10,"a":1e2,"n":123456789012345678901234}}'
    assert page_item_json(body) == b'{"type":"message"' + body[len(b'{"event":"message"'):]


def test_unknown_event_kinds_pass_through_under_their_name() -> None:
    assert orjson.loads(page_item_json(b'{"event":"poll_closed","chat_id":"c","seq":4,"ts":1}')) == {
        "type": "poll_closed", "chat_id": "c", "seq": 4, "ts": 1}


# ---- requests ----------------------------------------------------------------------------
def test_page_request_needs_chat_and_user() -> None:
    assert parse_page_request({"chat_id": "c", "user_id": "u"}).plan.limit == 50
    for payload in ({"user_id": "u"}, {"chat_id": "c"}, {"chat_id": 1, "user_id": "u"},
                    {"chat_id": "c" * 65, "user_id": "u"}, {"chat_id": "c", "user_id": ""}):
        with pytest.raises(BadRequest):
            parse_page_request(payload)


def test_get_request_by_seq_or_by_message_id() -> None:
    by_seq = parse_get_request({"chat_id": "c", "user_id": "u", "seq": 3})
    assert (by_seq.chat_id, by_seq.seq, by_seq.message_id) == ("c", 3, None)
    by_id = parse_get_request({"message_id": "m", "user_id": "u"})
    assert (by_id.chat_id, by_id.seq, by_id.message_id) == (None, None, "m")
    for payload in ({"chat_id": "c", "user_id": "u"}, {"chat_id": "c", "user_id": "u", "seq": 0},
                    {"chat_id": "c", "user_id": "u", "seq": "3"}, {"seq": 3, "user_id": "u"}):
        with pytest.raises(BadRequest):
            parse_get_request(payload)


def test_access_maps_to_codes() -> None:
    require_member(Access.MEMBER, "c")
    with pytest.raises(UnknownChat) as unknown:
        require_member(Access.UNKNOWN_CHAT, "c")
    with pytest.raises(NotMember) as forbidden:
        require_member(Access.NOT_MEMBER, "c")
    assert (unknown.value.code, forbidden.value.code) == (4001, 4003)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 0.1, 1.0) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_s(10_000, 0.1, 10.0) == 10.0
