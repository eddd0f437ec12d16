"""Router rules without I/O: request shapes, chat creation, sequence reservation, fan-out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from libs import contracts

from .errors import BadRequest, NotAllowed

CHAT_TYPES = ("direct", "group")
ROLES = ("owner", "admin", "member")
# Chat and user ids become NATS subject tokens (im.msg.<chat_id>): no '.', '*', '>'.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CONTENT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def require_id(payload: dict[str, Any], field: str, pattern: re.Pattern[str] = _ID) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadRequest(f"{field} must be an id string", details={"path": f"$.{field}"})
    return value


def require_shallow(payload: dict[str, Any], field: str) -> None:
    """Stored values nest at most contracts.MAX_DEPTH levels: deeper ones could be stored but
    never read back (history pages and deliveries wrap them beyond what the bus encodes)."""
    if contracts.nested_deeper_than(payload.get(field)):
        raise BadRequest(f"{field} is nested deeper than {contracts.MAX_DEPTH} levels",
                         details={"path": f"$.{field}"})


def require_int(payload: dict[str, Any], field: str, *, minimum: int = 0) -> int:
    value = payload.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"{field} must be an integer >= {minimum}", details={"path": f"$.{field}"})
    return value


@dataclass(frozen=True)
class ChatSpec:
    type: str
    name: str | None
    members: tuple[tuple[str, str], ...]  # (user_id, role), creator first
    pair_key: str | None


def chat_spec(payload: dict[str, Any], max_members: int) -> ChatSpec:
    """Validate a create-chat request; the creator owns groups, direct chats have no owner."""
    creator = require_id(payload, "creator_id")
    kind = payload.get("type")
    if kind not in CHAT_TYPES:
        raise BadRequest("type must be 'direct' or 'group'", details={"path": "$.type"})
    raw = payload.get("members")
    if not isinstance(raw, list) or not all(isinstance(m, str) and _ID.fullmatch(m) for m in raw):
        raise BadRequest("members must be a list of user ids", details={"path": "$.members"})
    others = list(dict.fromkeys(m for m in raw if m != creator))
    name = payload.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 128):
        raise BadRequest("name must be a string of 1..128 characters", details={"path": "$.name"})
    if kind == "direct":
        if len(others) != 1:
            raise BadRequest("a direct chat has exactly one other member", details={"path": "$.members"})
        pair = "|".join(sorted((creator, others[0])))
        return ChatSpec("direct", None, ((creator, "member"), (others[0], "member")), pair)
    if len(others) + 1 > max_members:
        raise BadRequest(f"a group has at most {max_members} members", details={"path": "$.members"})
    return ChatSpec("group", name, ((creator, "owner"), *((m, "member") for m in others)), None)


@dataclass(frozen=True)
class SendRequest:
    sender_id: str
    sender_device_id: str
    client_msg_id: str
    chat_id: str
    content_type: str
    content_version: int | None
    content: Any
    metadata: dict[str, Any] | None


def send_request(payload: dict[str, Any], metadata_max_bytes: int) -> SendRequest:
    client_msg_id = payload.get("client_msg_id")
    if not isinstance(client_msg_id, str) or not 1 <= len(client_msg_id) <= 128:
        raise BadRequest("id must be a string of 1..128 characters", details={"path": "$.id"})
    content_type = payload.get("content_type", "text")
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise BadRequest("content_type is not a valid type name", details={"path": "$.content_type"})
    version = payload.get("content_version")
    if version is not None:
        version = require_int(payload, "content_version", minimum=1)
    if "content" not in payload:
        raise BadRequest("content is required", details={"path": "$.content"})
    require_shallow(payload, "content")
    require_shallow(payload, "metadata")
    metadata = payload.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object", details={"path": "$.metadata"})
    if metadata is not None and len(orjson.dumps(metadata)) > metadata_max_bytes:
        raise BadRequest(f"metadata is larger than {metadata_max_bytes} bytes",
                         details={"path": "$.metadata"})
    return SendRequest(require_id(payload, "sender_id"), require_id(payload, "sender_device_id", _DEVICE_ID),
                       client_msg_id, require_id(payload, "chat_id"), content_type, version,
                       payload["content"], metadata)


def reservation_needed(seq: int, reserved: int) -> bool:
    """A number may be handed out only once MySQL's high-water mark covers it."""
    return seq > reserved


def reservation_due(seq: int, reserved: int, block: int) -> bool:
    """Time to reserve the next block ahead of need: half of the current one is used."""
    return seq > reserved - block // 2


def next_reservation(seq: int, block: int) -> int:
    """Reserve a whole block past ``seq`` so the next ``block - 1`` sends skip MySQL."""
    return seq + block - 1


# ---- send de-duplication (Redis cache, MySQL truth) ----------------------------------
OURS, ACKED, IN_PROGRESS, STALE = "ours", "acked", "in_progress", "stale"


def pending_lifetime_s(publish_deadline_s: float, dedup_ttl_s: int) -> int:
    """How long a send in progress holds its client id: as long as a live router can take
    to number and publish it. A router killed mid-send must not block retries of that id
    for the whole dedup window; a recorded ack keeps the full window."""
    return min(int(max(30, 3 * publish_deadline_s)), dedup_ttl_s)


@dataclass(frozen=True)
class ClaimRow:
    """A stored claim on (sender, client id); ``message_id`` is the claimant's token."""

    chat_id: str
    message_id: str
    seq: int | None
    ts: int | None
    acked: bool
    created_ts: int


def claim_verdict(row: ClaimRow, token: str, now_ms: int, pending_ms: int) -> str:
    """What a send holding ``token`` finds in the stored claim of its client id.

    ACKED: answer the original ack. OURS: the row is this send's. IN_PROGRESS: another
    live send holds it (5003, retry). STALE: its router died mid-send; take it over.
    """
    if row.acked:
        return ACKED
    if row.message_id == token:
        return OURS
    return IN_PROGRESS if now_ms - row.created_ts < pending_ms else STALE


def claim_ack(row: ClaimRow) -> dict[str, Any]:
    """The message_ack a recorded claim answers a resend with."""
    return {"message_id": row.message_id, "chat_id": row.chat_id, "seq": row.seq, "ts": row.ts}


def message_event(req: SendRequest, seq: int, message_id: str, version: int, ts: int) -> dict[str, Any]:
    return {"event": "message", "chat_id": req.chat_id, "seq": seq, "ts": ts,
            "message_id": message_id, "sender_id": req.sender_id,
            "sender_device_id": req.sender_device_id, "client_msg_id": req.client_msg_id,
            "content_type": req.content_type, "content_version": version,
            "content": req.content, "metadata": req.metadata}


def chat_object(chat: dict[str, Any], members: list[tuple[str, str]], last_seq: int) -> dict[str, Any]:
    return {"chat_id": chat["chat_id"], "type": chat["type"], "name": chat["name"],
            "last_seq": last_seq, "members": [{"user_id": u, "role": r} for u, r in members]}


# ---- edits, recalls, deletes --------------------------------------------------------------
UPDATE_KINDS = ("edit", "recall", "delete")


@dataclass(frozen=True)
class UpdateRequest:
    actor_id: str
    actor_device_id: str
    chat_id: str
    target_seq: int
    kind: str
    content: Any


def update_request(payload: dict[str, Any]) -> UpdateRequest:
    kind = payload.get("kind")
    if kind not in UPDATE_KINDS:
        raise BadRequest("kind must be edit, recall or delete", details={"path": "$.kind"})
    if kind == "edit" and "content" not in payload:
        raise BadRequest("an edit carries content", details={"path": "$.content"})
    require_shallow(payload, "content")
    return UpdateRequest(require_id(payload, "actor_id"),
                         require_id(payload, "actor_device_id", _DEVICE_ID),
                         require_id(payload, "chat_id"), require_int(payload, "target_seq", minimum=1),
                         kind, payload.get("content") if kind == "edit" else None)


def check_update(req: UpdateRequest, actor_role: str, target: dict[str, Any], now_ms: int,
                 edit_window_s: int, recall_window_s: int) -> None:
    """May ``req.actor_id`` (with ``actor_role``) edit/recall/delete ``target`` now?"""
    if target.get("type") != "message":
        raise BadRequest("only messages can be edited, recalled or deleted",
                         details={"path": "$.target_seq"})
    own = target.get("sender_id") == req.actor_id
    if req.kind == "delete":
        if not own and actor_role not in ("owner", "admin"):
            raise NotAllowed("only the sender or an owner/admin deletes a message")
        return
    if not own:
        raise NotAllowed(f"only the sender may {req.kind} a message")
    window = edit_window_s if req.kind == "edit" else recall_window_s
    if now_ms - int(target.get("ts") or 0) > window * 1000:
        raise NotAllowed(f"the {req.kind} window of {window} s has passed",
                         details={"window_s": window})


def message_updated_event(req: UpdateRequest, seq: int, ts: int, target: dict[str, Any]) -> dict[str, Any]:
    event = {"event": "message_updated", "chat_id": req.chat_id, "seq": seq, "ts": ts,
             "target_seq": req.target_seq, "kind": req.kind, "actor_id": req.actor_id}
    if isinstance(target.get("message_id"), str):
        event["target_message_id"] = target["message_id"]
    if req.kind == "edit":
        event["content"] = req.content
    return event


# ---- ephemeral frames ---------------------------------------------------------------------
def receipt_frame(chat_id: str, seq: int, user_id: str) -> dict[str, Any]:
    return {"type": "receipt", "chat_id": chat_id, "seq": seq, "user_id": user_id, "status": "read"}


def typing_frame(chat_id: str, user_id: str, typing: bool) -> dict[str, Any]:
    return {"type": "typing_indicator", "chat_id": chat_id, "user_id": user_id, "typing": typing}


def presence_frame(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The presence_update frame of a gateway's presence event; None when it is unusable."""
    user_id, status, seen = payload.get("user_id"), payload.get("status"), payload.get("last_seen_ts")
    if not isinstance(user_id, str) or not _ID.fullmatch(user_id) or status not in ("online", "offline"):
        return None
    if seen is not None and (isinstance(seen, bool) or not isinstance(seen, int)):
        seen = None
    return {"type": "presence_update", "user_id": user_id, "status": status, "last_seen_ts": seen}


class TypingThrottle:
    """At most one ``typing: true`` per (user, chat) per interval; ``false`` always passes."""

    def __init__(self, interval_ms: int, max_entries: int = 100_000):
        self.interval_ms = interval_ms
        self.max_entries = max_entries
        self._last: dict[tuple[str, str], int] = {}

    def allow(self, user_id: str, chat_id: str, typing: bool, now_ms: int) -> bool:
        key = (user_id, chat_id)
        if not typing:
            self._last.pop(key, None)
            return True
        last = self._last.get(key)
        if last is not None and now_ms - last < self.interval_ms:
            return False
        if len(self._last) >= self.max_entries:
            self._prune(now_ms)
        self._last[key] = now_ms
        return True

    def _prune(self, now_ms: int) -> None:
        self._last = {k: t for k, t in self._last.items() if now_ms - t < self.interval_ms}
        if len(self._last) >= self.max_entries:
            self._last.clear()
