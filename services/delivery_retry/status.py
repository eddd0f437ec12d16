"""Pure rules of the status API: one message, each recipient device's state.

Recipients are the chat's members at the message's seq, every device of theirs except the
one that sent it. A device's state, strongest first: ``read`` (it holds the message and
its user's read position reached it), ``delivered`` (its cursor reached the seq),
``failed`` (redelivery gave up while it was online; it still gets the message on its next
connect or sync, which turns the state into delivered), ``pending``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What delivery-retry (and router, for reads) know of one recipient device."""

    user_id: str
    device_id: str
    acked_seq: int = 0
    acked_ts: int = 0
    failed_attempts: int = 0  # 0: no failure row for this message
    failed_ts: int = 0
    retry_attempts: int = 0  # a running schedule that covers the message, else 0
    online: bool = False
    read_seq: int = 0


def device_status(seq: int, event_ts: int, facts: DeviceFacts) -> dict[str, object]:
    """The status API entry of one device for the message at ``seq``."""
    if facts.acked_seq >= seq:
        status = "read" if facts.read_seq >= seq else "delivered"
        attempts, ts = max(1, facts.retry_attempts, facts.failed_attempts), facts.acked_ts
    elif facts.failed_attempts:
        status, attempts, ts = "failed", facts.failed_attempts, facts.failed_ts
    else:
        status, ts = "pending", event_ts
        attempts = facts.retry_attempts or (1 if facts.online else 0)
    return {"user_id": facts.user_id, "device_id": facts.device_id, "status": status,
            "attempts": attempts, "updated_ts": max(ts, event_ts)}


def recipient_devices(members: Mapping[str, Iterable[str]], sender_id: str | None,
                      sender_device_id: str | None) -> list[tuple[str, str]]:
    """(user, device) of every member device but the sending one, sorted."""
    return sorted((user_id, device_id) for user_id, devices in members.items()
                  for device_id in devices
                  if (user_id, device_id) != (sender_id, sender_device_id))
