"""Edits, recalls and deletes of stored messages (no I/O).

A ``message_updated`` event is stored like any event (its own seq) and also changes its
target: the target's ``current_body`` is the stored message JSON with the content replaced
(edit) or nulled (recall, delete). An update only applies when it is newer (higher seq)
than the one that set the current state, so redeliveries never undo anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

ACTIVE = "active"
STATE_OF_KIND = {"edit": "edited", "recall": "recalled", "delete": "deleted"}
MAX_TEXT = 16_000  # characters of text_content (a TEXT column holds 64 KiB)


@dataclass(frozen=True)
class MessageUpdate:
    """What a message_updated event does to its target (seq is the update's own)."""

    seq: int
    target_seq: int
    kind: str
    content: Any = None
    content_type: str | None = None
    content_version: int | None = None

    @property
    def state(self) -> str:
        return STATE_OF_KIND[self.kind]


def parse_update(event: Mapping[str, Any], seq: int) -> MessageUpdate | None:
    """The update a message_updated event carries; None when it names no valid target."""
    target, kind = event.get("target_seq"), event.get("kind")
    if event.get("event") != "message_updated" or kind not in STATE_OF_KIND:
        return None
    if type(target) is not int or not 1 <= target < 2**63:
        return None
    content_type = event.get("content_type")
    version = event.get("content_version")
    return MessageUpdate(seq, target, kind, event.get("content") if kind == "edit" else None,
                         content_type if isinstance(content_type, str) else None,
                         version if type(version) is int else None)


def should_apply(current_updated_seq: int | None, update: MessageUpdate) -> bool:
    return current_updated_seq is None or current_updated_seq < update.seq


def text_content(content_type: Any, content: Any) -> str | None:
    """What search indexes: the content of text messages (truncated), else None."""
    if content_type != "text" or not isinstance(content, str) or not content:
        return None
    return content[:MAX_TEXT]


def apply_update(target_body: str, update: MessageUpdate) -> tuple[str, str | None]:
    """(current_body, text_content) of the target after the update.

    Parsing and re-encoding keeps key order, and orjson writes the same numbers back.
    """
    target = orjson.loads(target_body)
    if update.kind == "edit":
        target["content"] = update.content
        if update.content_type is not None and "content_type" in target:
            target["content_type"] = update.content_type
        if update.content_version is not None and "content_version" in target:
            target["content_version"] = update.content_version
    else:
        target["content"] = None
    text = text_content(target.get("content_type"), target["content"]) if update.kind == "edit" else None
    return orjson.dumps(target).decode(), text
