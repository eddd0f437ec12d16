"""history's pure logic: paging plans, request checks, stream events to rows, page items.

No I/O here. The paging rules are the contract's ("History paging"): ascending seq always,
exclusive bounds, the newest ``limit`` events when reading down (no bound or only
``before_seq``), the oldest ``limit`` above ``after_seq`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, TypeVar

import orjson

from libs import events

from .errors import BadRequest, NotMember, UnknownChat
from .updates import MessageUpdate, parse_update, text_content

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SEQ = 2**63 - 1  # BIGINT
MAX_CHAT_ID = 64
MAX_USER_ID = 128
MAX_EVENT_NAME = 24


# ---- paging ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PagePlan:
    """Which seqs a page may hold and which end of that range it is read from."""

    after: int | None  # exclusive lower bound
    before: int | None  # exclusive upper bound
    limit: int
    newest_first: bool  # read downwards from the top of the range (no after_seq)

    @property
    def fetch_limit(self) -> int:
        return self.limit + 1  # the extra row only says whether there is more

    def admits(self, seq: int) -> bool:
        return (self.after is None or seq > self.after) and (self.before is None or seq < self.before)


def _bound(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise BadRequest(f"{name} must be a non-negative integer", details={"field": name})
    return value


def plan_page(before: Any, after: Any, limit: Any) -> PagePlan:
    """Check the bounds and limit of a page request; BadRequest (4000) when they are bad."""
    if limit is None:
        limit = DEFAULT_LIMIT
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}",
                         details={"field": "limit"})
    after_seq = _bound(after, "after_seq")
    return PagePlan(after_seq, _bound(before, "before_seq"), limit, newest_first=after_seq is None)


def finish_page(rows: Sequence[T], plan: PagePlan) -> tuple[list[T], bool]:
    """Rows fetched in plan order (at most fetch_limit) -> (page in ascending seq, has_more)."""
    page = list(rows[: plan.limit])
    if plan.newest_first:
        page.reverse()
    return page, len(rows) > plan.limit


# ---- requests ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PageRequest:
    chat_id: str
    user_id: str
    plan: PagePlan


@dataclass(frozen=True)
class GetRequest:
    user_id: str
    chat_id: str | None = None
    seq: int | None = None
    message_id: str | None = None


def _text_field(payload: Mapping[str, Any], name: str, max_len: int) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise BadRequest(f"{name} must be a string of 1 to {max_len} characters",
                         details={"field": name})
    return value


def parse_page_request(payload: Mapping[str, Any]) -> PageRequest:
    return PageRequest(
        chat_id=_text_field(payload, "chat_id", MAX_CHAT_ID),
        user_id=_text_field(payload, "user_id", MAX_USER_ID),
        plan=plan_page(payload.get("before_seq"), payload.get("after_seq"), payload.get("limit")))


def parse_get_request(payload: Mapping[str, Any]) -> GetRequest:
    """{chat_id, user_id, seq} names one event; {message_id, user_id} one message."""
    user_id = _text_field(payload, "user_id", MAX_USER_ID)
    if payload.get("message_id") is not None:
        return GetRequest(user_id, message_id=_text_field(payload, "message_id", 128))
    seq = payload.get("seq")
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise BadRequest("seq must be a positive integer", details={"field": "seq"})
    return GetRequest(user_id, chat_id=_text_field(payload, "chat_id", MAX_CHAT_ID), seq=seq)


class Access(Enum):
    MEMBER = "member"
    NOT_MEMBER = "not_member"
    UNKNOWN_CHAT = "unknown_chat"


def require_member(access: Access, chat_id: str) -> None:
    if access is Access.UNKNOWN_CHAT:
        raise UnknownChat("unknown chat", details={"chat_id": chat_id})
    if access is Access.NOT_MEMBER:
        raise NotMember("not a member of this chat", details={"chat_id": chat_id})


# ---- stream events -> rows ---------------------------------------------------------------
class PoisonEvent(ValueError):
    """A stream message history can never store (unreadable, or no chat_id/seq)."""


@dataclass(frozen=True)
class MemberChange:
    chat_id: str
    user_id: str
    is_member: bool
    seq: int  # the chat_updated event that made the change


@dataclass(frozen=True)
class StoredEvent:
    """One history_messages row; body is the event JSON exactly as received."""

    chat_id: str
    seq: int
    event: str
    message_id: str | None
    sender_id: str | None
    sender_device_id: str | None
    client_msg_id: str | None
    content_type: str | None
    content_version: int | None
    body: str
    ts: int
    member_changes: tuple[MemberChange, ...] = ()
    text_content: str | None = None  # indexed for search (text messages only)
    update: MessageUpdate | None = None  # what a message_updated event does to its target

    @property
    def key(self) -> tuple[str, int]:
        return self.chat_id, self.seq

    def columns(self) -> tuple[Any, ...]:
        return (self.chat_id, self.seq, self.event, self.message_id, self.sender_id,
                self.sender_device_id, self.client_msg_id, self.content_type,
                self.content_version, self.body, self.ts, self.text_content)

    def without_message_id(self) -> StoredEvent:
        return replace(self, message_id=None)


def _fit(value: Any, max_len: int) -> str | None:
    """A copy column's value, or NULL when it would not fit (the body keeps the truth)."""
    return value if isinstance(value, str) and 0 < len(value) <= max_len else None


def _int_in(value: Any, low: int, high: int) -> int | None:
    return value if type(value) is int and low <= value <= high else None


def decode_event(data: bytes) -> StoredEvent:
    """Stream message body -> row; PoisonEvent when it can never be stored."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PoisonEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise PoisonEvent("not a JSON object")
    chat_id = _fit(event.get("chat_id"), MAX_CHAT_ID)
    seq = _int_in(event.get("seq"), 1, MAX_SEQ)
    name = _fit(event.get("event"), MAX_EVENT_NAME)
    if chat_id is None or seq is None or name is None:
        raise PoisonEvent("chat_id, seq or event missing or invalid")
    return StoredEvent(
        chat_id=chat_id, seq=seq, event=name,
        message_id=_fit(event.get("message_id"), 128) if name == "message" else None,
        sender_id=_fit(event.get("sender_id"), MAX_USER_ID),
        sender_device_id=_fit(event.get("sender_device_id"), 128),
        client_msg_id=_fit(event.get("client_msg_id"), 128),
        content_type=_fit(event.get("content_type"), 64),
        content_version=_int_in(event.get("content_version"), -(2**31), 2**31 - 1),
        body=data.decode(), ts=_int_in(event.get("ts"), 0, MAX_SEQ) or 0,
        member_changes=member_changes(event, chat_id, seq),
        text_content=text_content(event.get("content_type"), event.get("content"))
        if name == "message" else None,
        update=parse_update(event, seq))


def _user_ids(members: Any) -> list[str]:
    if not isinstance(members, list):
        return []
    found = (m.get("user_id") if isinstance(m, dict) else m for m in members)
    return [u for u in found if isinstance(u, str) and 0 < len(u) <= MAX_USER_ID]


def member_changes(event: Mapping[str, Any], chat_id: str, seq: int) -> tuple[MemberChange, ...]:
    """Who joins or leaves the chat with this event (chat_updated only).

    Reads details.members (created, member_added) and details.user_ids (member_removed), and
    also the single details.user_id and top-level members list the published schema allows.
    """
    if event.get("event") != "chat_updated":
        return ()
    raw = event.get("details")
    details: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    kind = event.get("kind")
    joined = _user_ids(event.get("members"))
    left: list[str] = []
    if kind in ("created", "member_added"):
        joined += _user_ids(details.get("members")) + _user_ids([details.get("user_id")])
    elif kind == "member_removed":
        left = _user_ids(details.get("user_ids")) + _user_ids([details.get("user_id")])
    changes = {user: True for user in joined}
    changes.update((user, False) for user in left)
    return tuple(MemberChange(chat_id, user, member, seq) for user, member in changes.items())


# ---- stored events -> page items ---------------------------------------------------------
_EVENT_PREFIX = b'{"event":"'


def page_item(event: dict[str, Any]) -> dict[str, Any]:
    """The page item of a stored event; unknown event kinds pass through under their name."""
    if event.get("event") in events.PAGE_TYPE:
        return events.to_page_item(event)
    item = {"type": str(event.get("event"))}
    item.update((k, v) for k, v in event.items() if k != "event")
    return item


def page_item_json(body: str | bytes) -> bytes:
    """JSON of ``page_item(body)``, spliced from the stored text when it starts with "event".

    Splicing keeps every other byte as stored (numbers, escapes, key order); anything
    unusual takes the parse-and-encode path, which gives the same JSON value.
    """
    raw = body.encode() if isinstance(body, str) else body
    if raw.startswith(_EVENT_PREFIX):
        end = raw.find(b'"', len(_EVENT_PREFIX))
        name, rest = raw[len(_EVENT_PREFIX):end].decode(), raw[end + 1:]
        if name in events.PAGE_TYPE and rest[:1] in (b",", b"}") and b'"event"' not in rest:
            return b'{"type":"' + events.PAGE_TYPE[name].encode() + b'"' + rest
    return orjson.dumps(page_item(orjson.loads(raw)))


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1, 2, …): base doubling up to cap."""
    return min(cap, base * 2 ** min(max(attempt - 1, 0), 62))
