"""Router rules without I/O: request shapes, chat creation, sequence reservation, fan-out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import BadRequest

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


def next_reservation(seq: int, block: int) -> int:
    """Reserve a whole block past ``seq`` so the next ``block - 1`` sends skip MySQL."""
    return seq + block - 1


def group_targets(presence: dict[str, dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """{user: {device: gateway}} -> {gateway: [{user_id, device_id}, …]}: one publish per gateway."""
    by_gateway: dict[str, list[dict[str, str]]] = {}
    for user_id, devices in presence.items():
        for device_id, gateway in devices.items():
            by_gateway.setdefault(gateway, []).append({"user_id": user_id, "device_id": device_id})
    return by_gateway


def message_event(req: SendRequest, seq: int, message_id: str, version: int, ts: int) -> dict[str, Any]:
    return {"event": "message", "chat_id": req.chat_id, "seq": seq, "ts": ts,
            "message_id": message_id, "sender_id": req.sender_id,
            "sender_device_id": req.sender_device_id, "client_msg_id": req.client_msg_id,
            "content_type": req.content_type, "content_version": version,
            "content": req.content, "metadata": req.metadata}


def chat_object(chat: dict[str, Any], members: list[tuple[str, str]], last_seq: int) -> dict[str, Any]:
    return {"chat_id": chat["chat_id"], "type": chat["type"], "name": chat["name"],
            "last_seq": last_seq, "members": [{"user_id": u, "role": r} for u, r in members]}
