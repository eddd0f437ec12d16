"""Pure rules of delivery-retry: reading stream events, projecting them, merging cursors.

The projection (per chat: highest seq and members) must come out the same however
JetStream hands the events over — in order, redelivered, or an old batch replayed after a
newer one committed. Both parts are therefore join-semilattices, merged the same way in
memory (here) and in SQL (``storage.py``):

* ``last_seq`` of a chat is the maximum seq seen;
* each (chat, user) membership is a last-writer-wins register ordered by seq: the event
  with the highest seq that mentions the user decides whether they are a member.

Merging is commutative, associative and idempotent, so any order and any number of
duplicates gives what applying every event once in seq order gives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from libs.events import stream_subject

from .errors import BadRequest, DeliveryError, NotMember, UnknownChat

EVENT_TYPES = frozenset({"message", "message_updated", "chat_updated", "void"})
MAX_SEQ = 2**53 - 1
_CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

CursorKey = tuple[str, str, str]  # (user_id, device_id, chat_id)


class UnreadableEvent(ValueError):
    """A stream message that is not an event this service can project (it is terminated)."""


# ---- stream events -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamEvent:
    """What delivery-retry needs of one stored event: its place, its member changes and,
    for a message, who sent it (``body`` keeps the whole message for push events)."""

    chat_id: str
    seq: int
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    kind: str = "message"
    ts: int = 0
    message_id: str | None = None
    sender_id: str | None = None
    sender_device_id: str | None = None
    body: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def row(self) -> tuple[str, int, str, str | None, str | None, str | None, int]:
        """The event's dlv_events row."""
        return (self.chat_id, self.seq, self.kind, self.message_id, self.sender_id,
                self.sender_device_id, self.ts)


def parse_event(data: bytes, subject: str | None = None) -> StreamEvent:
    """Read one stream message; raises UnreadableEvent when it cannot be projected."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UnreadableEvent("not JSON") from None
    if not isinstance(body, dict):
        raise UnreadableEvent("not a JSON object")
    chat_id, seq = body.get("chat_id"), body.get("seq")
    if not _matches(chat_id, _CHAT_ID) or not is_seq(seq):
        raise UnreadableEvent("bad chat_id or seq")
    event_type = body.get("event")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise UnreadableEvent(f"unknown event {event_type!r}")
    if subject is not None and subject != stream_subject(chat_id):
        raise UnreadableEvent(f"chat {chat_id} published on {subject}")
    added, removed = member_changes(body)
    ts = body.get("ts")
    ts = ts if type(ts) is int and ts >= 0 else 0
    if event_type != "message":
        return StreamEvent(chat_id, seq, added, removed, event_type, ts)
    return StreamEvent(chat_id, seq, added, removed, event_type, ts,
                       _optional(body, "message_id", _USER_ID), _optional(body, "sender_id", _USER_ID),
                       _optional(body, "sender_device_id", _DEVICE_ID), body)


def _optional(body: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str | None:
    value = body.get(name)
    return value if _matches(value, pattern) else None


def member_changes(body: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(added, removed) user ids of a chat_updated event; empty for every other event.

    Accepts both published shapes: ``details.members`` / ``details.user_ids`` lists and a
    single ``details.user_id``; a created event without ``details.members`` falls back to
    the event's top-level ``members`` list.
    """
    if body.get("event") != "chat_updated":
        return frozenset(), frozenset()
    details = body.get("details")
    if not isinstance(details, dict):
        raise UnreadableEvent("chat_updated without details")
    kind = body.get("kind")
    if kind == "created":
        return _member_ids(details.get("members", body.get("members"))), frozenset()
    if kind == "member_added":
        return _member_ids(details.get("members")) | _one_id(details.get("user_id")), frozenset()
    if kind == "member_removed":
        return frozenset(), _user_ids(details.get("user_ids")) | _one_id(details.get("user_id"))
    return frozenset(), frozenset()


def _member_ids(members: Any) -> frozenset[str]:
    if members is None:
        return frozenset()
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise UnreadableEvent("members must be a list of objects")
    return _user_ids([m.get("user_id") for m in members])


def _user_ids(values: Any) -> frozenset[str]:
    if values is None:
        return frozenset()
    if not isinstance(values, list) or not all(_matches(v, _USER_ID) for v in values):
        raise UnreadableEvent("bad user id list")
    return frozenset(values)


def _one_id(value: Any) -> frozenset[str]:
    return frozenset() if value is None else _user_ids([value])


# ---- projection ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Membership:
    """One user's membership of one chat as decided by the event at ``seq``."""

    seq: int
    active: bool


def merge_membership(current: Membership | None, incoming: Membership) -> Membership:
    """Last writer (highest seq) wins; one event both adding and removing means removed."""
    if current is None or incoming.seq > current.seq:
        return incoming
    if incoming.seq < current.seq:
        return current
    return Membership(current.seq, current.active and incoming.active)


@dataclass
class Projection:
    """Chats' highest seqs and members' registers: a whole store, or one batch's changes."""

    last_seq: dict[str, int] = field(default_factory=dict)
    members: dict[tuple[str, str], Membership] = field(default_factory=dict)

    def add(self, event: StreamEvent) -> None:
        self.last_seq[event.chat_id] = max(self.last_seq.get(event.chat_id, 0), event.seq)
        for user_id in event.added:
            self._set((event.chat_id, user_id), Membership(event.seq, True))
        for user_id in event.removed:
            self._set((event.chat_id, user_id), Membership(event.seq, False))

    def merge(self, other: Projection) -> None:
        """Join ``other`` into this one (what the SQL upserts do to the tables)."""
        for chat_id, seq in other.last_seq.items():
            self.last_seq[chat_id] = max(self.last_seq.get(chat_id, 0), seq)
        for key, membership in other.members.items():
            self._set(key, membership)

    def _set(self, key: tuple[str, str], membership: Membership) -> None:
        self.members[key] = merge_membership(self.members.get(key), membership)

    def active_members(self, chat_id: str) -> set[str]:
        return {u for (c, u), m in self.members.items() if c == chat_id and m.active}

    def chat_rows(self) -> list[tuple[str, int]]:
        """(chat_id, last_seq), sorted so concurrent writers lock rows in the same order."""
        return sorted(self.last_seq.items())

    def member_rows(self) -> list[tuple[str, str, bool, int]]:
        """(chat_id, user_id, active, member_seq), sorted by key."""
        return [(c, u, m.active, m.seq) for (c, u), m in sorted(self.members.items())]

    def __bool__(self) -> bool:
        return bool(self.last_seq or self.members)


def project(events: Iterable[StreamEvent]) -> Projection:
    """The changes a batch of events makes, reduced to one row per chat and per member."""
    projection = Projection()
    for event in events:
        projection.add(event)
    return projection


# ---- cursors and requests ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack:
    """A device's cumulative ack: it holds every event of the chat up to ``seq``."""

    user_id: str
    device_id: str
    chat_id: str
    seq: int

    @property
    def key(self) -> CursorKey:
        return (self.user_id, self.device_id, self.chat_id)


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """The cursor after an ack was committed, and whether this ack moved it forward."""

    acked_seq: int
    advanced: bool
    previous: int = field(default=0, compare=False)  # the cursor before this batch


def merge_cursor(current: int | None, acked: int) -> int:
    """Cursors only move forward: acks are cumulative, so a late smaller ack changes nothing."""
    return acked if current is None else max(current, acked)


def merge_acks(acks: Iterable[Ack]) -> dict[CursorKey, int]:
    """The highest acked seq per cursor: one row per (device, chat) to write."""
    merged: dict[CursorKey, int] = {}
    for ack in acks:
        merged[ack.key] = merge_cursor(merged.get(ack.key), ack.seq)
    return merged


def judge_ack(ack: Ack, last_seq: int | None, is_member: bool) -> DeliveryError | None:
    """Why ``ack`` must be refused (unknown chat, not a member, seq beyond the chat), or None."""
    if last_seq is None:
        return UnknownChat(f"unknown chat {ack.chat_id}")
    if not is_member:
        return NotMember(f"{ack.user_id} is not a member of {ack.chat_id}")
    if ack.seq > last_seq:
        return BadRequest(f"seq {ack.seq} is beyond the chat's last_seq {last_seq}",
                          details={"last_seq": last_seq})
    return None


def is_seq(value: Any) -> TypeGuard[int]:
    return type(value) is int and 1 <= value <= MAX_SEQ


def is_seq_or_zero(value: Any) -> bool:
    return (type(value) is int and value == 0) or is_seq(value)


def parse_ack(payload: Mapping[str, Any]) -> Ack:
    seq = payload.get("seq")
    if not is_seq(seq):
        raise BadRequest("seq must be an integer >= 1", details={"path": "$.seq"})
    return Ack(_field(payload, "user_id", _USER_ID), _field(payload, "device_id", _DEVICE_ID),
               _field(payload, "chat_id", _CHAT_ID), seq)


def parse_acks(payload: Mapping[str, Any]) -> tuple[list[Ack], bool]:
    """The acks of a request and whether it was the batch form ``{"acks": [...]}``."""
    if "acks" not in payload:
        return [parse_ack(payload)], False
    items = payload["acks"]
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        raise BadRequest("acks must be a list of 1..1000 acks", details={"path": "$.acks"})
    if not all(isinstance(item, dict) for item in items):
        raise BadRequest("every ack must be an object", details={"path": "$.acks"})
    return [parse_ack(item) for item in items], True


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """A sync or cursor request: whose device, optionally one chat and a starting seq."""

    user_id: str
    device_id: str
    chat_id: str | None = None
    after_seq: int | None = None


def parse_device_query(payload: Mapping[str, Any], *, chat_required: bool = False) -> DeviceQuery:
    chat_id = payload.get("chat_id")
    if chat_required or chat_id is not None:
        chat_id = _field(payload, "chat_id", _CHAT_ID)
    after_seq = payload.get("after_seq")
    if after_seq is not None and (chat_id is None or not is_seq_or_zero(after_seq)):
        raise BadRequest("after_seq must be an integer >= 0 and comes with chat_id",
                         details={"path": "$.after_seq"})
    return DeviceQuery(_field(payload, "user_id", _USER_ID),
                       _field(payload, "device_id", _DEVICE_ID), chat_id, after_seq)


def _field(payload: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = payload.get(name)
    if not _matches(value, pattern):
        raise BadRequest(f"{name} is missing or malformed", details={"path": f"$.{name}"})
    return value


def _matches(value: Any, pattern: re.Pattern[str]) -> TypeGuard[str]:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def parse_status_query(payload: Mapping[str, Any]) -> tuple[str, str]:
    """{user_id, message_id} of a status request."""
    return _field(payload, "user_id", _USER_ID), _field(payload, "message_id", _USER_ID)
