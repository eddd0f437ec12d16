"""Typed events: one frozen dataclass per server frame type of the contract.

Every event keeps the frame it came from in ``raw``, so fields the server adds later are
never lost; unknown frame types become ``UnknownEvent``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str] = ""
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Self:
        """The frame's fields; a missing one takes its declared default, else None."""
        values = {f.name: frame.get(f.name) for f in dataclasses.fields(cls)
                  if f.name != "raw" and (f.name in frame or _required(f))}
        return cls(raw=frame, **values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredEvent(Event):
    """An event with a place in its chat's dense ``seq`` order."""
    chat_id: str
    seq: int
    ts: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewMessage(StoredEvent):
    type: ClassVar[str] = "new_message"
    message_id: str
    sender_id: str
    sender_device_id: str | None = None
    content_type: str = "text"
    content_version: int | None = None
    content: Any = None
    metadata: dict[str, Any] | None = None
    client_msg_id: str | None = None
    state: str | None = None  # catch-up and history only: active/edited/recalled/deleted


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageUpdated(StoredEvent):
    type: ClassVar[str] = "message_updated"
    target_seq: int
    kind: str  # edit / recall / delete
    content: Any = None
    actor_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChatUpdated(StoredEvent):
    type: ClassVar[str] = "chat_updated"
    kind: str  # created / member_added / member_removed / renamed / role_changed / …
    actor_id: str | None = None
    details: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Void(StoredEvent):
    type: ClassVar[str] = "void"
    reason: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Receipt(Event):
    type: ClassVar[str] = "receipt"
    chat_id: str
    seq: int
    user_id: str
    status: str  # delivered / read
    device_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryFailed(Event):
    type: ClassVar[str] = "delivery_failed"
    message_id: str
    chat_id: str
    seq: int
    user_id: str
    device_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncDone(Event):
    type: ClassVar[str] = "sync_done"
    chat_id: str
    last_seq: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncRequired(Event):
    type: ClassVar[str] = "sync_required"
    chat_id: str
    retained_from_seq: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class PresenceUpdate(Event):
    type: ClassVar[str] = "presence_update"
    user_id: str
    status: str  # online / offline
    last_seen_ts: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TypingIndicator(Event):
    type: ClassVar[str] = "typing_indicator"
    chat_id: str
    user_id: str
    typing: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    """An ``error`` frame not answering a send of this SDK (those raise instead)."""
    type: ClassVar[str] = "error"
    code: int
    message: str
    id: str | None = None
    details: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageAck(Event):
    type: ClassVar[str] = "message_ack"
    id: str
    message_id: str
    chat_id: str
    seq: int
    ts: int
    duplicate: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A frame type this SDK version does not know; see ``raw``."""
    name: str


KNOWN: dict[str, type[Event]] = {cls.type: cls for cls in (
    NewMessage, MessageUpdated, ChatUpdated, Void, Receipt, DeliveryFailed, SyncDone,
    SyncRequired, PresenceUpdate, TypingIndicator, ErrorEvent, MessageAck)}
HISTORY_TYPES: dict[str, type[StoredEvent]] = {"message": NewMessage, "message_updated": MessageUpdated,
                                                "chat_updated": ChatUpdated, "void": Void}


def parse_frame(frame: dict[str, Any]) -> Event:
    """The typed event of a server frame."""
    kind = frame.get("type")
    cls = KNOWN.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return UnknownEvent(name=str(kind), raw=frame)
    return cls.from_frame(frame)


def parse_history_item(item: dict[str, Any]) -> StoredEvent:
    """A history page item as the event a live socket would have carried."""
    cls = HISTORY_TYPES.get(item.get("type", ""), Void)
    return cls.from_frame(item)
