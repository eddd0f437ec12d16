"""The pure redelivery, receipt and status rules of delivery-retry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.delivery_retry import retries, status
from services.delivery_retry.retries import Advance, EventRef, Step

BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)
users = st.sampled_from(["u1", "u2", "u3"])
devices = st.sampled_from(["d1", "d2"])


@st.composite
def chat_events(draw: st.DrawFn) -> list[EventRef]:
    count = draw(st.integers(1, 30))
    out = []
    for seq in range(1, count + 1):
        kind = draw(st.sampled_from(["message", "message", "chat_updated", "void"]))
        sender = (draw(users), draw(devices)) if kind == "message" else (None, None)
        out.append(EventRef(seq, kind, f"m{seq}" if kind == "message" else None, *sender, ts=seq))
    return out


def test_the_schedule_uses_each_delay_once_then_repeats_the_last() -> None:
    assert [retries.delay_after(n, BACKOFF) for n in range(1, 8)] == [1, 2, 4, 8, 16, 16, 16]
    # push at 0, resends at +1, +3, +7, +15, failed at +31 (five attempts)
    assert sum(retries.delay_after(n, BACKOFF) for n in range(1, 6)) == 31


@settings(max_examples=200)
@given(cursor=st.integers(0, 40), needed=st.integers(0, 40), online=st.booleans(),
       attempts=st.integers(1, 8), max_attempts=st.integers(1, 6))
def test_next_step_never_fails_an_offline_device_and_ends_when_caught_up(
        cursor: int, needed: int, online: bool, attempts: int, max_attempts: int) -> None:
    step = retries.next_step(cursor, needed, online, attempts, max_attempts)
    if needed <= cursor:
        assert step is Step.CAUGHT_UP
    elif not online:
        assert step is Step.OFFLINE
    else:
        assert step is (Step.FAIL if attempts >= max_attempts else Step.RESEND)


@settings(max_examples=200)
@given(events=chat_events(), cursor=st.integers(0, 30), user=users, device=devices)
def test_a_device_never_waits_for_its_own_messages(events: list[EventRef], cursor: int,
                                                   user: str, device: str) -> None:
    target = len(events)
    needed = retries.needed_up_to(events, cursor, target, user, device)
    others = [e.seq for e in events if cursor < e.seq and not e.sent_by(user, device)]
    assert needed == (max(others) if others else 0)


@settings(max_examples=200)
@given(events=chat_events(), before=st.integers(0, 30), step=st.integers(1, 30), user=users)
def test_receipts_go_to_each_other_sender_covered_once(events: list[EventRef], before: int,
                                                       step: int, user: str) -> None:
    after = before + step
    sent = retries.receipts([Advance(user, "d9", "c1", before, after)], {"c1": events})
    expected = {e.sender_id for e in events if e.kind == "message" and before < e.seq <= after
                and e.sender_id != user}
    assert sorted(s for s, _ in sent) == sorted(expected)
    assert all(f["seq"] == after and f["status"] == "delivered" and f["user_id"] == user
               for _, f in sent)


@settings(max_examples=200)
@given(events=chat_events(), cursor=st.integers(0, 30), user=users, device=devices)
def test_delivery_failed_names_every_foreign_message_in_the_range(events: list[EventRef], cursor: int,
                                                                  user: str, device: str) -> None:
    needed = retries.needed_up_to(events, cursor, len(events), user, device)
    frames = retries.failed_frames(user, device, "c1", events, cursor, needed)
    assert [f["seq"] for _, f in frames] == [
        e.seq for e in events if e.kind == "message" and cursor < e.seq <= needed
        and not e.sent_by(user, device)]
    assert all(sender == next(e.sender_id for e in events if e.seq == f["seq"]) for sender, f in frames)


def test_behind_devices_are_the_online_ones_below_the_check() -> None:
    online = {"u1": {"d1": "gwA", "d2": "gwB"}, "u2": {"d1": "gwA"}}
    cursors = {("u1", "d1"): 5, ("u2", "d1"): 2}
    assert retries.behind_devices(online, cursors, 5) == [("u1", "d2", "gwB", 0), ("u2", "d1", "gwA", 2)]


@settings(max_examples=200)
@given(seq=st.integers(1, 20), acked=st.integers(0, 20), read=st.integers(0, 20),
       failed=st.integers(0, 5), retry=st.integers(0, 5), online=st.booleans())
def test_device_status_is_the_strongest_fact(seq: int, acked: int, read: int, failed: int,
                                             retry: int, online: bool) -> None:
    facts = status.DeviceFacts("u", "d", acked, 100, failed, 200, retry, online, read)
    entry = status.device_status(seq, 50, facts)
    if acked >= seq:
        assert entry["status"] == ("read" if read >= seq else "delivered")
        assert entry["attempts"] >= 1
    elif failed:
        assert (entry["status"], entry["attempts"]) == ("failed", failed)
    else:
        assert entry["status"] == "pending"
        assert entry["attempts"] == (retry or (1 if online else 0))
    # when the state last changed: the ack (100), the failure (200), else the message (50)
    assert entry["updated_ts"] == {"read": 100, "delivered": 100, "failed": 200, "pending": 50}[entry["status"]]


def test_recipients_are_every_member_device_but_the_sending_one() -> None:
    members = {"a": ["d1", "d2"], "b": ["d1"]}
    assert status.recipient_devices(members, "a", "d1") == [("a", "d2"), ("b", "d1")]
