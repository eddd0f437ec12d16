"""The checker's vocabulary: devices, stored events, expectations, faults and the report."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

# The fault categories, in the order a summary lists them.
LOST = "lost"
DUPLICATED = "duplicated"
OUT_OF_ORDER = "out_of_order"
GAPS = "gaps"
UNANSWERED = "unanswered"
MISMATCH = "mismatch"
CATEGORIES = (LOST, DUPLICATED, OUT_OF_ORDER, GAPS, UNANSWERED, MISMATCH)


@dataclass(frozen=True, order=True)
class Device:
    """One logged-in device: frames are recorded per device, membership is per user."""

    user_id: str
    device_id: str

    def __str__(self) -> str:
        return f"{self.user_id}/{self.device_id}"


@dataclass(frozen=True)
class StoredEvent:
    """One row of ``history_messages``: ``body`` is the event JSON as history stored it."""

    chat_id: str
    seq: int
    body: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> StoredEvent:
        return cls(body["chat_id"], int(body["seq"]), body)

    @property
    def event(self) -> str:
        return str(self.body.get("event"))

    @property
    def message_id(self) -> str | None:
        return self.body.get("message_id")

    @property
    def sender_id(self) -> str | None:
        return self.body.get("sender_id")

    @property
    def client_msg_id(self) -> str | None:
        return self.body.get("client_msg_id")


@dataclass(frozen=True)
class Expectations:
    """What the caller knows about the run beyond the recorded frames.

    ``complete``: devices that must hold every stored event of every checked chat at which
    their user was a member (e.g. every device, after each ran a final ``sync``). Devices
    not named here are checked for order, content and duplicates, never for losses.
    ``chats``: the chats to check (default: every chat stored or sent to).
    ``members``: a fixed member set per chat, overriding the one derived from the stored
    ``chat_updated`` events (useful when those events are not loaded).
    """

    complete: Collection[Device] = ()
    chats: Collection[str] | None = None
    members: Mapping[str, Collection[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    category: str
    what: str
    chat_id: str | None = None
    seq: int | None = None
    device: Device | None = None

    def __str__(self) -> str:
        where = [f"chat {self.chat_id}" if self.chat_id else "", f"seq {self.seq}" if self.seq else "",
                 f"device {self.device}" if self.device else ""]
        place = " ".join(w for w in where if w)
        return f"{place}: {self.what}" if place else self.what


@dataclass
class Report:
    """The checker's verdict. ``faults`` has a (possibly empty) list for every category.

    ``redeliveries`` counts extra deliveries of a (chat, seq) a device already had: the
    contract allows them (clients drop duplicates), so they are counted, not faults.
    """

    faults: dict[str, list[Fault]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})
    redeliveries: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def add(self, category: str, what: str, chat_id: str | None = None, seq: int | None = None,
            device: Device | None = None) -> None:
        self.faults[category].append(Fault(category, what, chat_id, seq, device))

    @property
    def ok(self) -> bool:
        return not any(self.faults.values())

    @property
    def counts(self) -> dict[str, int]:
        return {category: len(found) for category, found in self.faults.items()}

    @property
    def failing(self) -> set[str]:
        """The categories with at least one fault."""
        return {category for category, found in self.faults.items() if found}

    def summary(self, limit: int = 5) -> str:
        counts = ", ".join(f"{c} {n}" for c, n in self.counts.items())
        facts = ", ".join(f"{k} {v}" for k, v in self.stats.items())
        lines = [f"history check {'ok' if self.ok else 'FAILED'}: {counts}",
                 f"  {facts}, redeliveries {self.redeliveries}"]
        for category, found in self.faults.items():
            if found:
                lines.append(f"{category} ({len(found)}):")
                lines.extend(f"  {fault}" for fault in found[:limit])
                if len(found) > limit:
                    lines.append(f"  … and {len(found) - limit} more")
        return "\n".join(lines)

    def assert_ok(self, limit: int = 5) -> None:
        assert self.ok, self.summary(limit)
