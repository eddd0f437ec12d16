"""The send de-duplication decision (no I/O): what a send finds in the stored claim of its
client id, and how long a send in progress holds that id."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router import domain

tokens = st.from_regex(r"[0-9A-Z]{26}", fullmatch=True)
times = st.integers(min_value=0, max_value=2**45)
pendings = st.integers(min_value=1, max_value=10**8)


@st.composite
def rows(draw: st.DrawFn) -> domain.ClaimRow:
    acked = draw(st.booleans())
    return domain.ClaimRow("chat1", draw(tokens), draw(st.integers(1, 10**9)) if acked else None,
                           draw(times) if acked else None, acked, draw(times))


@settings(max_examples=200)
@given(rows(), tokens, times, pendings)
def test_a_recorded_ack_always_answers_with_itself(row: domain.ClaimRow, token: str, now: int,
                                                  pending_ms: int) -> None:
    verdict = domain.claim_verdict(row, token, now, pending_ms)
    assert (verdict == domain.ACKED) == row.acked
    if row.acked:
        assert domain.claim_ack(row) == {"message_id": row.message_id, "chat_id": "chat1",
                                         "seq": row.seq, "ts": row.ts}


@settings(max_examples=200)
@given(rows(), tokens, times, pendings)
def test_a_pending_claim_is_taken_over_only_once_it_outlived_a_live_send(
        row: domain.ClaimRow, token: str, now: int, pending_ms: int) -> None:
    verdict = domain.claim_verdict(row, token, now, pending_ms)
    if row.acked:
        return
    if row.message_id == token:
        assert verdict == domain.OURS
    elif now - row.created_ts < pending_ms:
        assert verdict == domain.IN_PROGRESS
    else:
        assert verdict == domain.STALE


@settings(max_examples=100)
@given(rows(), st.lists(tokens, min_size=2, max_size=5, unique=True), times, pendings)
def test_of_several_sends_of_one_id_at_most_the_holder_goes_on(row: domain.ClaimRow, senders: list[str],
                                                              now: int, pending_ms: int) -> None:
    """Against one stored row, no two different tokens are both told the send is theirs
    (a takeover is a compare-and-set: only one STALE verdict can win it)."""
    verdicts = [domain.claim_verdict(row, token, now, pending_ms) for token in senders]
    assert verdicts.count(domain.OURS) <= 1
    assert not (domain.OURS in verdicts and domain.STALE in verdicts)


@settings(max_examples=100)
@given(st.floats(min_value=0.1, max_value=10_000), st.integers(min_value=1, max_value=10**6))
def test_the_pending_lifetime_covers_a_publish_and_never_outlasts_the_window(deadline: float,
                                                                             ttl: int) -> None:
    lifetime = domain.pending_lifetime_s(deadline, ttl)
    assert lifetime <= ttl
    assert lifetime >= min(30, ttl) and (lifetime >= int(3 * deadline) or lifetime == ttl)
