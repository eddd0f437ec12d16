"""auth's pure rules: request validation (property-tested) and the session/family state machine."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import MALFORMED
from services.auth import domain
from services.auth.domain import RefreshOutcome, Session, SessionState
from services.auth.errors import InvalidRequest

USERNAME_OK = re.compile(r"[A-Za-z0-9_.-]{3,32}")
valid_usernames = st.from_regex(r"[A-Za-z0-9_.-]{3,32}", fullmatch=True)
valid_passwords = st.text(min_size=8, max_size=256)


def _rejects(field: str, fn, *args):
    with pytest.raises(InvalidRequest) as caught:
        fn(*args)
    assert caught.value.code == MALFORMED
    assert caught.value.details == {"field": field}
    assert caught.value.message.startswith(f"{field}: ")


# ---- usernames and passwords -------------------------------------------------------------
@settings(max_examples=200)
@given(valid_usernames, valid_passwords)
def test_valid_registrations_are_accepted(username, password):
    request = domain.parse_register({"username": username, "password": password})
    assert (request.username, request.password) == (username, password)
    assert request.display_name == username
    assert domain.username_key(username) == username.lower()


@settings(max_examples=200)
@given(st.text(max_size=40).filter(lambda s: not USERNAME_OK.fullmatch(s)))
def test_usernames_outside_the_rule_are_rejected(username):
    _rejects("username", domain.parse_register, {"username": username, "password": "x" * 8})


@settings(max_examples=200)
@given(valid_usernames)
def test_case_variants_share_one_key(username):
    assert domain.username_key(username.upper()) == domain.username_key(username.lower())


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=7), st.text(min_size=257, max_size=400)))
def test_passwords_outside_8_to_256_are_rejected(password):
    _rejects("password", domain.parse_register, {"username": "alice", "password": password})


@settings(max_examples=100)
@given(st.one_of(st.integers(), st.none(), st.lists(st.text()), st.booleans()))
def test_non_string_fields_are_rejected(value):
    field = "username"
    _rejects(field, domain.parse_register, {"username": value, "password": "password1"})


def test_login_with_a_name_that_cannot_exist_reads_as_unknown():
    assert domain.parse_login({"username": "no spaces", "password": "p"}).username_key is None
    assert domain.parse_login({"username": "Alice", "password": "p"}).username_key == "alice"
    _rejects("username", domain.parse_login, {"password": "p"})
    _rejects("password", domain.parse_login, {"username": "alice", "password": "p" * 257})


@settings(max_examples=100)
@given(st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True))
def test_valid_device_ids_are_accepted(device_id):
    request = domain.parse_login({"username": "alice", "password": "p", "device_id": device_id})
    assert request.device_id == device_id


@settings(max_examples=100)
@given(st.text(max_size=80).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", s)))
def test_bad_device_ids_are_rejected(device_id):
    payload = {"username": "alice", "password": "p", "device_id": device_id}
    _rejects("device_id", domain.parse_login, payload)


def test_display_name_rules():
    assert domain.validate_display_name(None, "alice") == "alice"
    assert domain.validate_display_name("  Alice Ä  ", "alice") == "Alice Ä"
    _rejects("display_name", domain.validate_display_name, "  ", "alice")
    _rejects("display_name", domain.validate_display_name, "x" * 65, "alice")
    _rejects("display_name", domain.validate_display_name, "a\nb", "alice")


def test_user_ids_are_checked_and_deduplicated():
    assert domain.validate_user_ids(["a", "b", "a"]) == ["a", "b"]
    _rejects("user_ids", domain.validate_user_ids, None)
    _rejects("user_ids", domain.validate_user_ids, "a")
    _rejects("user_ids[1]", domain.validate_user_ids, ["a", 3])
    _rejects("user_ids", domain.validate_user_ids, ["a"] * 10_001)


def test_refresh_token_digest_is_sha256_hex():
    digest = domain.hash_refresh_token("token")
    assert len(digest) == 64 and digest == domain.hash_refresh_token("token")
    assert digest != domain.hash_refresh_token("token2")


# ---- sessions and families ---------------------------------------------------------------
def _session(**changes) -> Session:
    base = domain.new_session("U1", "D1", "S1", "F1", now=1_000, ttl_ms=10_000)
    return Session(**{**base.__dict__, **changes})


def test_session_states():
    assert domain.state_of(_session(), 5_000) is SessionState.LIVE
    assert domain.state_of(_session(), 11_000) is SessionState.EXPIRED
    assert domain.state_of(_session(revoked_ts=2_000), 5_000) is SessionState.REVOKED
    assert domain.revoke(_session(), 3_000).revoked_ts == 3_000
    assert domain.revoke(_session(revoked_ts=2_000), 3_000).revoked_ts == 2_000


def test_refresh_of_a_live_session_rotates_within_the_family():
    plan = domain.plan_refresh(_session(), 5_000, "S2", 10_000)
    assert plan.outcome is RefreshOutcome.ROTATED
    successor = plan.successor
    assert successor is not None
    assert (successor.session_id, successor.family_id, successor.user_id, successor.device_id) == \
        ("S2", "F1", "U1", "D1")
    assert (successor.created_ts, successor.last_seen_ts, successor.expires_ts) == \
        (1_000, 5_000, 15_000)
    assert successor.revoked_ts is None


def test_refresh_with_a_revoked_token_ends_the_family():
    plan = domain.plan_refresh(_session(revoked_ts=2_000), 5_000, "S2", 10_000)
    assert (plan.outcome, plan.revoke_family, plan.successor) == (RefreshOutcome.REUSED, "F1", None)


def test_refresh_with_an_expired_or_unknown_token_fails():
    assert domain.plan_refresh(_session(), 11_000, "S2", 10_000).outcome is RefreshOutcome.EXPIRED
    assert domain.plan_refresh(None, 5_000, "S2", 10_000).outcome is RefreshOutcome.UNKNOWN


@settings(max_examples=100)
@given(st.integers(0, 10**13), st.integers(1, 10**10), st.one_of(st.none(), st.integers(0, 10**13)),
       st.integers(0, 10**13))
def test_only_live_sessions_rotate(created, ttl, revoked, now):
    session = _session(created_ts=created, last_seen_ts=created, expires_ts=created + ttl,
                       revoked_ts=revoked)
    plan = domain.plan_refresh(session, now, "S2", ttl)
    assert (plan.outcome is RefreshOutcome.ROTATED) == domain.is_live(session, now)
    if plan.successor is not None:
        assert domain.is_live(plan.successor, now) and plan.successor.family_id == session.family_id


def test_session_view_and_revoked_event():
    session = _session()
    assert domain.session_view(session, "S1", None) == \
        {"device_id": "D1", "created_ts": 1_000, "last_seen_ts": 1_000, "current": True}
    assert domain.session_view(session, "S9", "D1")["current"] is False
    assert domain.session_view(session, None, "D1")["current"] is True
    subject, event = domain.revoked_event(session, "logout", 7)
    assert subject == "im.evt.session.revoked.U1"
    assert event == {"user_id": "U1", "session_id": "S1", "device_id": "D1", "reason": "logout",
                     "ts": 7}
