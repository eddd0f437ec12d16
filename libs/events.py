"""Stored events (the JSON on ``im.msg.<chat_id>``) and what clients see of them.

One event per ``seq``: a message, an update of a message, a chat change, or a void.
The same event becomes a WebSocket frame (live or catch-up) and a history page item, so
both conversions live here. Schemas: ``proto/schemas/nats/msg_event.json``,
``proto/schemas/ws/server/*.json``, ``proto/schemas/http/messages_page.json``.
"""

from __future__ import annotations

from typing import Any

FRAME_TYPE = {"message": "new_message", "message_updated": "message_updated",
              "chat_updated": "chat_updated", "void": "void"}
PAGE_TYPE = {"message": "message", "message_updated": "message_updated",
             "chat_updated": "chat_updated", "void": "void"}


def stream_subject(chat_id: str) -> str:
    return f"im.msg.{chat_id}"


def msg_id(chat_id: str, seq: int) -> str:
    """The JetStream de-duplication id: one stored event per (chat, seq), ever."""
    return f"{chat_id}:{seq}"


def _without_kind(event: dict[str, Any], type_: str) -> dict[str, Any]:
    out = {"type": type_}
    out.update((k, v) for k, v in event.items() if k != "event")
    return out


def to_frame(event: dict[str, Any]) -> dict[str, Any]:
    return _without_kind(event, FRAME_TYPE[event["event"]])


def to_page_item(event: dict[str, Any]) -> dict[str, Any]:
    return _without_kind(event, PAGE_TYPE[event["event"]])


def page_item_to_frame(item: dict[str, Any]) -> dict[str, Any]:
    """History page items name the stored event kind in ``type``; frames name the frame."""
    return {**item, "type": FRAME_TYPE[item["type"]]}
