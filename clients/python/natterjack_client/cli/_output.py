"""Readable lines by default, JSON with ``--json``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from .._events import (
    ChatUpdated,
    Event,
    MessageUpdated,
    NewMessage,
    Receipt,
    StoredEvent,
    TypingIndicator,
)


class Output:
    def __init__(self, as_json: bool):
        self.as_json = as_json

    def emit(self, data: Any, text: str) -> None:
        """``data`` as one JSON document, or ``text`` for people."""
        print(json.dumps(data, ensure_ascii=False) if self.as_json else text, flush=True)

    def table(self, rows: list[dict[str, Any]], columns: list[str], data: Any) -> None:
        if self.as_json:
            self.emit(data, "")
            return
        widths = [max([len(c)] + [len(_cell(r.get(c))) for r in rows]) for c in columns]
        for line in [dict(zip(columns, columns, strict=True)), *rows]:
            print("  ".join(_cell(line.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        sys.stdout.flush()

    def event(self, event: Event) -> None:
        self.emit(event.raw, describe(event))


def describe(event: Event) -> str:
    """One line for an event: time, chat and seq, then what happened."""
    when = time.strftime("%H:%M:%S", time.localtime(event.raw.get("ts", time.time() * 1000) / 1000))
    where = f"{event.chat_id} #{event.seq}" if isinstance(event, StoredEvent) else event.raw.get("chat_id", "")
    return " ".join(part for part in (when, where, _what(event)) if part)


def _what(event: Event) -> str:
    if isinstance(event, NewMessage):
        content = event.content if isinstance(event.content, str) else json.dumps(event.content)
        return f"<{event.sender_id}> {content}"
    if isinstance(event, MessageUpdated):
        return f"{event.kind} of #{event.target_seq}" + (f": {event.content}" if event.content else "")
    if isinstance(event, ChatUpdated):
        return f"chat {event.kind} by {event.actor_id}"
    if isinstance(event, Receipt):
        return f"{event.status} up to #{event.seq} by {event.user_id}"
    if isinstance(event, TypingIndicator):
        return f"{event.user_id} {'is typing' if event.typing else 'stopped typing'}"
    fields = {k: v for k, v in event.raw.items() if k not in ("type", "chat_id", "seq", "ts")}
    return f"{event.raw.get('type', '?')} {json.dumps(fields, ensure_ascii=False)}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
