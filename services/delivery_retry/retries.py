"""Pure rules of redelivery, receipts and delivery status (no I/O; property-tested).

A device is *behind* in a chat when its cursor is below an event it does not hold. A
device holds its own messages from the moment it got their ``message_ack``, so only
events from others count: a device whose only unacked events are its own is never
resent to, never failed.

The schedule per (device, chat): the live push is attempt 1; the first look finds the
device behind after ``backoff[0]`` and sends attempt 2; each later send waits the next
delay of ``backoff`` (the last one repeats). When attempt ``max_attempts`` has gone out
and one more delay passed with the cursor still behind, the delivery is failed. A device
that went offline leaves the schedule and stays pending: it gets its backlog on connect.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DeviceKey = tuple[str, str]  # (user_id, device_id)


@dataclass(frozen=True, slots=True)
class EventRef:
    """One stored event as the scheduler sees it (a dlv_events row)."""

    seq: int
    kind: str
    message_id: str | None = None
    sender_id: str | None = None
    sender_device_id: str | None = None
    ts: int = 0

    def sent_by(self, user_id: str, device_id: str) -> bool:
        return self.sender_id == user_id and self.sender_device_id == device_id


def delay_after(attempts: int, backoff_s: Sequence[float]) -> float:
    """Seconds to wait after send number ``attempts`` before looking again."""
    return backoff_s[min(max(attempts, 1), len(backoff_s)) - 1]


def needed_up_to(events: Iterable[EventRef], cursor: int, target: int, user_id: str,
                 device_id: str) -> int:
    """The highest seq in (cursor, target] the device does not hold yet (0: none)."""
    needed = 0
    for event in events:
        if cursor < event.seq <= target and not event.sent_by(user_id, device_id):
            needed = max(needed, event.seq)
    return needed


class Step(enum.Enum):
    CAUGHT_UP = "caught_up"   # the cursor reached the target: the schedule ends
    OFFLINE = "offline"       # no socket: the schedule ends, the device stays pending
    FAIL = "fail"             # attempts used up: failure rows, delivery_failed to senders
    RESEND = "resend"         # send cursor+1..target again, then wait the next delay


def next_step(cursor: int, needed: int, online: bool, attempts: int, max_attempts: int) -> Step:
    """What a due retry does, given the device's cursor and what it still needs."""
    if needed <= cursor:
        return Step.CAUGHT_UP
    if not online:
        return Step.OFFLINE
    if attempts >= max_attempts:
        return Step.FAIL
    return Step.RESEND


def behind_devices(online: Mapping[str, Mapping[str, str]], cursors: Mapping[DeviceKey, int],
                   check_seq: int) -> list[tuple[str, str, str, int]]:
    """(user, device, gateway, cursor) of every online device whose cursor is below check_seq."""
    out = []
    for user_id, devices in sorted(online.items()):
        for device_id, gateway_id in sorted(devices.items()):
            cursor = cursors.get((user_id, device_id), 0)
            if cursor < check_seq:
                out.append((user_id, device_id, gateway_id, cursor))
    return out


# ---- receipts ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Advance:
    """A device's cursor moved from ``before`` to ``after`` in a chat."""

    user_id: str
    device_id: str
    chat_id: str
    before: int
    after: int


def receipts(advances: Iterable[Advance], messages: Mapping[str, Sequence[EventRef]]
             ) -> list[tuple[str, dict[str, object]]]:
    """(sender user, receipt frame) for each sender whose messages an advance covered.

    The receipt is cumulative like the ack: the device holds every event up to ``seq``.
    A user is not told about their own devices' acks.
    """
    out: list[tuple[str, dict[str, object]]] = []
    for adv in advances:
        senders = {m.sender_id for m in messages.get(adv.chat_id, ())
                   if adv.before < m.seq <= adv.after and m.kind == "message"
                   and m.sender_id is not None and m.sender_id != adv.user_id}
        frame = {"type": "receipt", "chat_id": adv.chat_id, "seq": adv.after,
                 "user_id": adv.user_id, "device_id": adv.device_id, "status": "delivered"}
        out.extend((sender, frame) for sender in sorted(s for s in senders if s is not None))
    return out


def failed_frames(user_id: str, device_id: str, chat_id: str, events: Iterable[EventRef],
                  cursor: int, needed: int) -> list[tuple[str, dict[str, object]]]:
    """(sender user, delivery_failed frame) for each message the device gave up on."""
    out: list[tuple[str, dict[str, object]]] = []
    for event in events:
        if event.kind == "message" and cursor < event.seq <= needed and event.sender_id \
                and not event.sent_by(user_id, device_id):
            out.append((event.sender_id, {
                "type": "delivery_failed", "message_id": event.message_id, "chat_id": chat_id,
                "seq": event.seq, "user_id": user_id, "device_id": device_id}))
    return out
