"""Router rules without I/O: membership changes, type registration, edits, typing throttle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import NatterjackError
from services.router import content_types, domain, membership

GROUP = [("o", "owner"), ("a", "admin"), ("m", "member")]


def code_of(fn, *args) -> int:
    with pytest.raises(NatterjackError) as refused:
        fn(*args)
    return refused.value.code


@pytest.mark.parametrize(("actor", "user", "role", "kind", "code"), [
    ("o", "n", None, "member_added", None), ("a", "n", "member", "member_added", None),
    ("a", "n", "admin", None, 4003), ("m", "n", None, None, 4003), ("x", "n", None, None, 4003),
    ("o", "m", "admin", "role_changed", None), ("a", "m", "admin", None, 4003),
    ("o", "o", "member", None, 4003), ("o", "n", "owner", None, 4000), ("o", "m", "member", None, None),
])
def test_adding_members_and_changing_roles(actor, user, role, kind, code) -> None:
    if code:
        assert code_of(membership.plan_add, "group", GROUP, actor, user, role, 10) == code
        return
    change = membership.plan_add("group", GROUP, actor, user, role, 10)
    assert (change.kind if change else None) == kind


def test_the_group_cap_and_direct_chats_are_enforced() -> None:
    assert code_of(membership.plan_add, "group", GROUP, "o", "n", None, 3) == 4003
    direct = [("x", "member"), ("y", "member")]
    assert code_of(membership.plan_add, "direct", direct, "x", "n", None, 10) == 4003
    assert code_of(membership.plan_remove, "direct", direct, "x", "x") == 4003


@pytest.mark.parametrize(("actor", "user", "code"), [
    ("a", "o", 4003), ("a", "a2", 4003), ("m", "a", 4003), ("o", "o", 4003), ("o", "zz", 4004),
    ("a", "m", None), ("m", "m", None), ("o", "a", None), ("a", "a", None),
])
def test_removing_members(actor, user, code) -> None:
    members = [*GROUP, ("a2", "admin")]
    if code:
        assert code_of(membership.plan_remove, "group", members, actor, user) == code
        return
    change = membership.plan_remove("group", members, actor, user)
    assert change.details == {"user_ids": [user], "left": actor == user}
    assert user not in dict(membership.apply(members, change))


def test_the_last_member_may_leave_even_as_owner() -> None:
    assert membership.plan_remove("group", [("o", "owner")], "o", "o").kind == "member_removed"


def test_ownership_transfer_makes_the_old_owner_an_admin() -> None:
    change = membership.plan_transfer("group", GROUP, "o", "m")
    assert dict(membership.apply(GROUP, change)) == {"o": "admin", "a": "admin", "m": "owner"}
    assert code_of(membership.plan_transfer, "group", GROUP, "a", "m") == 4003
    assert code_of(membership.plan_transfer, "group", GROUP, "o", "zz") == 4004


@settings(max_examples=100)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "remove", "transfer"]),
                              st.sampled_from(["o", "a", "m", "n1", "n2"]),
                              st.sampled_from(["o", "a", "m", "n1", "n2"]),
                              st.sampled_from([None, "admin", "member"])), max_size=20))
def test_any_sequence_of_allowed_changes_keeps_exactly_one_owner(ops) -> None:
    """A group keeps one owner until its last member leaves (then it is empty)."""
    members = list(GROUP)
    for op, actor, user, role in ops:
        try:
            if op == "add":
                change = membership.plan_add("group", members, actor, user, role, 10)
            elif op == "remove":
                change = membership.plan_remove("group", members, actor, user)
            else:
                change = membership.plan_transfer("group", members, actor, user)
        except NatterjackError:
            continue
        if change is not None:
            members = membership.apply(members, change)
    owners = [u for u, r in members if r == "owner"]
    assert len(owners) == (1 if members else 0) and len({u for u, _ in members}) == len(members)


def test_registration_versions() -> None:
    latest = {"registrant_id": "u1", "version": 2, "schema_json": "{}"}
    decide = content_types.decide_registration
    assert decide(None, "u1", None, "{}") == (1, True)
    assert decide(latest, "u1", None, "{}") == (2, False)
    assert decide(latest, "u1", None, '{"a":1}') == (3, True)
    assert decide(latest, "u1", 3, '{"a":1}') == (3, True)
    assert code_of(decide, latest, "u2", 3, "{}") == 4003
    assert code_of(decide, latest, "u1", 4, "{}") == 4000
    assert code_of(decide, latest, "u1", 2, '{"a":1}') == 4009
    assert code_of(decide, None, "u1", 2, "{}") == 4000


def test_schemas_must_compile_and_stay_local() -> None:
    assert code_of(content_types.compile_custom, [1]) == 4000
    assert code_of(content_types.compile_custom, {"type": "nonsense"}) == 4000
    assert code_of(content_types.compile_custom, {"$ref": "http://example.com/x.json"}) == 4000
    validate = content_types.compile_custom({"definitions": {"s": {"type": "string"}},
                                             "properties": {"a": {"$ref": "#/definitions/s"}}})
    assert validate({"a": "x"}) == {"a": "x"}
    assert code_of(content_types.registration, {"name": "text"}) == 4003
    assert code_of(content_types.registration, {"name": "Bad"}) == 4000


def _update(kind="edit", actor="s", **extra):
    payload = {"actor_id": actor, "actor_device_id": "d", "chat_id": "c", "target_seq": 2, "kind": kind,
               "content": "x", **extra}
    return domain.update_request(payload)


@pytest.mark.parametrize(("kind", "actor", "role", "age_s", "code"), [
    ("edit", "s", "member", 10, None), ("edit", "s", "member", 1000, 4003), ("edit", "o", "owner", 1, 4003),
    ("recall", "s", "member", 60, None), ("recall", "s", "member", 200, 4003),
    ("delete", "o", "admin", 99999, None), ("delete", "m", "member", 1, 4003), ("delete", "s", "member", 99999, None),
])
def test_edit_recall_delete_rules(kind, actor, role, age_s, code) -> None:
    target = {"type": "message", "sender_id": "s", "ts": 1_000_000}
    args = (_update(kind, actor), role, target, 1_000_000 + age_s * 1000, 900, 120)
    if code:
        assert code_of(domain.check_update, *args) == code
    else:
        domain.check_update(*args)


def test_only_messages_are_update_targets() -> None:
    target = {"type": "chat_updated", "ts": 0}
    assert code_of(domain.check_update, _update("delete", "o"), "owner", target, 0, 900, 120) == 4000
    assert code_of(domain.update_request, {"actor_id": "a", "actor_device_id": "d", "chat_id": "c",
                                           "target_seq": 1, "kind": "edit"}) == 4000


def test_typing_is_throttled_per_user_and_chat() -> None:
    throttle = domain.TypingThrottle(1000)
    assert throttle.allow("u", "c", True, 0)
    assert not throttle.allow("u", "c", True, 500)
    assert throttle.allow("u", "c2", True, 500) and throttle.allow("u", "c", False, 600)
    assert throttle.allow("u", "c", True, 700) and throttle.allow("u", "c", True, 1700)


def test_presence_frames_need_a_user_and_a_status() -> None:
    assert domain.presence_frame({"user_id": "u", "status": "away"}) is None
    assert domain.presence_frame({"user_id": "u", "status": "online", "last_seen_ts": 5}) == {
        "type": "presence_update", "user_id": "u", "status": "online", "last_seen_ts": 5}
