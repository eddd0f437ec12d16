"""Typed answers of the REST API. Each keeps the JSON it came from in ``raw``."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, TypeVar

from ._events import StoredEvent, parse_history_item

M = TypeVar("M", bound="Model")


@dataclasses.dataclass(kw_only=True)
class Model:
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls: type[M], body: dict[str, Any]) -> M:
        names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
        return cls(raw=body, **{k: v for k, v in body.items() if k in names})


@dataclasses.dataclass(kw_only=True)
class Credentials(Model):
    """What login and refresh answer; the SDK replaces it on every refresh."""
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str
    ws_url: str
    expires_in: int = 0
    obtained_at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "raw"}

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in


@dataclasses.dataclass(kw_only=True)
class Member(Model):
    user_id: str
    role: str = "member"


@dataclasses.dataclass(kw_only=True)
class Chat(Model):
    chat_id: str
    type: str
    name: str | None = None
    last_seq: int = 0
    members: list[Member] = dataclasses.field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Chat:
        chat = super().from_json(body)
        chat.members = [Member.from_json(m) for m in body.get("members", [])]
        return chat


@dataclasses.dataclass(kw_only=True)
class ChatSummary(Model):
    chat_id: str
    type: str
    name: str | None = None
    last_seq: int = 0
    unread: int = 0


@dataclasses.dataclass(kw_only=True)
class HistoryPage(Model):
    chat_id: str
    events: list[StoredEvent] = dataclasses.field(default_factory=list)
    has_more: bool = False
    retained_from_seq: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> HistoryPage:
        return cls(raw=body, chat_id=body["chat_id"], has_more=bool(body.get("has_more")),
                   retained_from_seq=body.get("retained_from_seq"),
                   events=[parse_history_item(item) for item in body.get("events", [])])


@dataclasses.dataclass(kw_only=True)
class RecipientStatus(Model):
    user_id: str
    device_id: str
    status: str  # pending / delivered / read / failed
    attempts: int = 0
    updated_ts: int | None = None


@dataclasses.dataclass(kw_only=True)
class MessageStatus(Model):
    message_id: str
    chat_id: str
    seq: int
    recipients: list[RecipientStatus] = dataclasses.field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MessageStatus:
        status = super().from_json(body)
        status.recipients = [RecipientStatus.from_json(r) for r in body.get("recipients", [])]
        return status


@dataclasses.dataclass(kw_only=True)
class MessageType(Model):
    name: str
    version: int
    schema: dict[str, Any]
    builtin: bool = False
    registrant_id: str | None = None
    created: bool | None = None  # register only: False for an identical repeat


@dataclasses.dataclass(kw_only=True)
class Presence(Model):
    user_id: str
    status: str  # online / offline
    last_seen_ts: int | None = None
