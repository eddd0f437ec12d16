"""Login lockout and registration-limit rules (pure domain logic), property-tested."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.config import ConfigError
from services.auth import domain
from services.auth.config import load
from services.auth.domain import Attempts, LockoutPolicy
from services.auth.errors import InvalidRequest

policies = st.builds(
    LockoutPolicy,
    free_attempts=st.integers(1, 10),
    window_ms=st.integers(1, 600_000),
    base_ms=st.integers(1, 5_000),
    max_ms=st.integers(5_000, 900_000),
)
# Gaps between successive attempts, from a burst (0 ms) to long pauses.
gaps = st.lists(st.integers(0, 2_000_000), min_size=1, max_size=60)
DEFAULT = LockoutPolicy(5, 300_000, 1_000, 900_000)


def _replay(policy: LockoutPolicy, deltas: list[int]):
    """An attacker who fails every admitted attempt: yields (now, record before, admission)."""
    record, now = Attempts(), 1_000_000
    for delta in deltas:
        now += delta
        admission = domain.admit_attempt([record], now, [policy])
        yield now, record, admission
        if admission.allowed:
            record = admission.records[0]


@settings(max_examples=200)
@given(policies, gaps)
def test_refusals_wait_between_1_ms_and_the_cap(policy, deltas):
    for _, _, admission in _replay(policy, deltas):
        if not admission.allowed:
            assert 1 <= admission.retry_after_ms <= policy.max_ms
            assert admission.records == () and admission.locked_by == 0


@settings(max_examples=200)
@given(policies, gaps)
def test_admitted_guesses_are_spaced_by_the_growing_lock(policy, deltas):
    """After n counted failures, the next admitted guess comes at least lock_ms(n) later,
    unless the record was forgotten after a quiet window."""
    previous: tuple[int, Attempts] | None = None
    for now, before, admission in _replay(policy, deltas):
        if not admission.allowed:
            continue
        after = admission.records[0]
        if previous is not None and domain.current(before, now, policy) == before:
            last_ts, last_record = previous
            assert now - last_ts >= domain.lock_ms(last_record.failures, policy)
            assert after.failures == last_record.failures + 1
        else:
            assert after.failures == 1 or previous is None
        previous = (now, after)


@settings(max_examples=200)
@given(policies, st.lists(st.integers(0, 10_000), min_size=1, max_size=10))
def test_fewer_failures_than_the_free_attempts_never_lock(policy, deltas):
    deltas = deltas[: policy.free_attempts]
    for _, _, admission in _replay(policy, deltas):
        assert admission.allowed


@settings(max_examples=200)
@given(policies)
def test_a_burst_gets_exactly_the_free_attempts(policy):
    admitted = [a.allowed for _, _, a in _replay(policy, [0] * (policy.free_attempts + 5))]
    assert admitted == [True] * policy.free_attempts + [False] * 5


@settings(max_examples=200)
@given(policies, st.integers(0, 80))
def test_lock_starts_at_base_doubles_and_is_capped(policy, failures):
    lock = domain.lock_ms(failures, policy)
    if failures < policy.free_attempts:
        assert lock == 0
    else:
        assert lock == min(policy.max_ms, policy.base_ms * 2 ** (failures - policy.free_attempts))
        assert domain.lock_ms(failures + 1, policy) >= lock
    assert domain.lock_ms(policy.free_attempts, policy) == min(policy.base_ms, policy.max_ms)


@settings(max_examples=200)
@given(policies, gaps, st.integers(0, 1_000))
def test_a_quiet_window_after_the_lock_forgets_everything(policy, deltas, extra):
    *_, (now, before, admission) = _replay(policy, deltas)
    record = admission.records[0] if admission.allowed else before
    later = domain.expiry_ts(record, policy) + extra
    fresh = domain.admit_attempt([record], later, [policy])
    assert fresh.allowed and fresh.records[0].failures == 1


@settings(max_examples=200)
@given(policies, gaps)
def test_forgiving_takes_back_one_count_and_keeps_the_lock(policy, deltas):
    *_, (now, before, admission) = _replay(policy, deltas)
    record = admission.records[0] if admission.allowed else before
    forgiven = domain.forgive(record, now, policy)
    assert forgiven.failures == max(0, record.failures - 1)
    assert forgiven.locked_until == record.locked_until


@settings(max_examples=200)
@given(st.lists(st.tuples(policies, gaps), min_size=1, max_size=3), st.integers(0, 100_000))
def test_several_records_refuse_while_any_is_locked(histories, later):
    records, used = [], []
    now = 0
    for policy, deltas in histories:
        *_, (at, before, admission) = _replay(policy, deltas)
        records.append(admission.records[0] if admission.allowed else before)
        used.append(policy)
        now = max(now, at)
    now += later
    waits = [domain.current(r, now, p).locked_until - now for r, p in zip(records, used, strict=True)]
    admission = domain.admit_attempt(records, now, used)
    assert admission.allowed == (max(waits) <= 0)
    if not admission.allowed:
        assert admission.retry_after_ms == max(waits) == waits[admission.locked_by]
    else:
        assert [r.failures for r in admission.records] == \
            [domain.current(r, now, p).failures + 1 for r, p in zip(records, used, strict=True)]


@settings(max_examples=100)
@given(st.integers(1, 1000), st.integers(1, 2000), st.integers(-2, 3_600_000))
def test_registrations_over_the_hourly_limit_wait_for_the_window(limit, count, left):
    wait = domain.registration_wait_ms(count, left, limit)
    assert (wait == 0) == (count <= limit)
    assert wait == 0 or wait >= 1


def test_default_policy_locks_one_second_after_five_failures_up_to_fifteen_minutes():
    config = load({"NJ_AUTH_DEV_GENERATE_KEY": "true"})
    assert config.limits.username_policy == DEFAULT
    assert config.limits.register_per_ip_per_hour == 20
    assert [domain.lock_ms(n, DEFAULT) for n in (4, 5, 6, 7, 14, 15, 40)] == \
        [0, 1_000, 2_000, 4_000, 512_000, 900_000, 900_000]


@pytest.mark.parametrize(("given_ip", "key"), [
    ("203.0.113.5", "203.0.113.5"),
    ("::ffff:203.0.113.5", "203.0.113.5"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("[2001:DB8:1:2::ff]", "2001:db8:1:2::/64"),
    ("Proxy-Label", "proxy-label"),
    ("", None),
])
def test_client_addresses_become_rate_limit_keys(given_ip, key):
    payload = {"username": "alice", "password": "p", "client_ip": given_ip}
    assert domain.parse_login(payload).client_ip == key
    assert domain.parse_register({**payload, "password": "x" * 8}).client_ip == key


def test_client_address_must_be_a_short_string():
    for bad in ("x" * 65, 7):
        with pytest.raises(InvalidRequest) as caught:
            domain.parse_login({"username": "alice", "password": "p", "client_ip": bad})
        assert caught.value.details == {"field": "client_ip"}


def test_lockout_settings_are_checked():
    with pytest.raises(ConfigError) as caught:
        load({"NJ_AUTH_DEV_GENERATE_KEY": "true", "NJ_AUTH_LOCKOUT_BASE_S": "10",
              "NJ_AUTH_LOCKOUT_MAX_S": "5", "NJ_AUTH_LOGIN_FREE_ATTEMPTS": "0"})
    assert "NJ_AUTH_LOCKOUT_MAX_S must be at least NJ_AUTH_LOCKOUT_BASE_S" in str(caught.value)
    assert "NJ_AUTH_LOGIN_FREE_ATTEMPTS" in str(caught.value)
    config = load({"NJ_AUTH_DEV_GENERATE_KEY": "true", "NJ_AUTH_LOCKOUT_BASE_S": "0.25",
                   "NJ_AUTH_LOGIN_IP_FREE_ATTEMPTS": "7"})
    assert config.limits.ip_policy == LockoutPolicy(7, 300_000, 250, 900_000)
