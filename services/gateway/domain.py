"""Gateway rules without I/O: frames in, and the per-socket order/dedup of events out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from libs import contracts

from .errors import BadFrame, FrameTooLarge, UnknownFrameType

CLIENT_FRAMES = ("send_message", "ack", "read", "start_typing", "stop_typing", "sync", "auth", "ping")


def parse_frame(text: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Decode and validate one client frame against ``proto/schemas/ws/client/<type>.json``."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the {max_bytes}-byte cap")
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadFrame("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise BadFrame("frame must be a JSON object")
    kind = frame.get("type")
    if kind not in CLIENT_FRAMES:
        raise UnknownFrameType(f"unknown frame type {kind!r}", details={"path": "$.type"})
    validate = contracts.validator(f"schemas/ws/client/{kind}.json")
    return contracts.check(validate, frame, code=BadFrame.code, what=f"bad {kind} frame")  # type: ignore[no-any-return]


def frame_id(text: str | bytes) -> str | None:
    """Best effort: the ``id`` of a frame that failed validation, to echo in the error."""
    try:
        value = orjson.loads(text).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) <= 128 else None


def token_from(path: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The access token from ``Authorization: Bearer`` or, for browsers, ``?token=``."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    tokens = parse_qs(urlsplit(path).query).get("token")
    return tokens[0] if tokens else None


@dataclass
class ChatOrder:
    """What one socket has been sent of one chat: drops repeats, holds live events while
    the chat catches up so catch-up and live traffic interleave in seq order."""

    delivered: int = 0
    catching_up: bool = False
    held: dict[int, Any] = field(default_factory=dict)

    def offer(self, seq: int, item: Any) -> list[Any]:
        """Items to write now for a live event (held or dropped ones yield nothing)."""
        if seq <= self.delivered:
            return []
        if self.catching_up:
            self.held[seq] = item
            return []
        self.delivered = seq
        return [item]

    def caught_up_to(self, seq: int) -> None:
        self.delivered = max(self.delivered, seq)

    def finish_catch_up(self) -> list[Any]:
        """Release held live events above what catch-up sent, in seq order."""
        self.catching_up = False
        out = []
        for seq in sorted(self.held):
            if seq > self.delivered:
                self.delivered = seq
                out.append(self.held[seq])
        self.held.clear()
        return out
