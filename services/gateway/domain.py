"""Gateway rules without I/O: frames in, and the per-socket order/dedup of events out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from libs import contracts

from .errors import BadFrame, FrameTooLarge, UnknownFrameType

CLIENT_FRAMES = ("send_message", "ack", "read", "start_typing", "stop_typing", "sync", "auth", "ping")
MAX_DEPTH = contracts.MAX_DEPTH


def check_depth(value: Any) -> None:
    if contracts.nested_deeper_than(value, MAX_DEPTH):
        raise BadFrame(f"JSON nested deeper than {MAX_DEPTH} levels")


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
    check_depth(frame)
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


def header(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    """A request header's value (names compare case-insensitively), or None."""
    wanted = name.lower().encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def token_from(path: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The access token from ``Authorization: Bearer`` or, for browsers, ``?token=``."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    tokens = parse_qs(urlsplit(path).query).get("token")
    return tokens[0] if tokens else None


@dataclass(slots=True)
class ChatOrder:
    """What one socket has been sent of one chat, so it sees each event once, in seq order.

    Live events can arrive out of order (several routers, concurrent fan-outs) or not at
    all (a fast-path publish missed). An event above ``delivered + 1`` is held while the
    gap is filled: by the missing event arriving live, or from history (``gap`` names the
    range to fetch). Until the chat's starting point is known (no catch-up plan named it)
    the first events wait a short settling window, then delivery starts at the lowest.
    """

    delivered: int = 0
    known: bool = False
    catching_up: bool = False
    synced: bool = False  # caught up since connect (sync_done sent, or nothing was behind)
    watching: bool = False  # a gap watcher runs for it
    held: dict[int, Any] = field(default_factory=dict)

    def start_at(self, seq: int) -> None:
        """The socket holds everything up to ``seq`` (from the device's cursor)."""
        self.delivered = max(self.delivered, seq)
        self.known = True

    def offer(self, seq: int, item: Any) -> list[Any]:
        """Items to write now for an event (live or fetched); others wait or are repeats."""
        if (self.known and seq <= self.delivered) or seq in self.held:
            return []
        if not self.known and seq == 1:
            self.known = True  # a chat's first event: nothing can come before it
        if self.catching_up or not self.known or seq != self.delivered + 1:
            self.held[seq] = item
            return []
        self.delivered = seq
        return [item, *self._drain()]

    def _drain(self) -> list[Any]:
        out = []
        while self.delivered + 1 in self.held:
            self.delivered += 1
            out.append(self.held.pop(self.delivered))
        return out

    @property
    def gap(self) -> tuple[int, int] | None:
        """(after, before): the seqs strictly between are missing, when waiting on a gap."""
        if self.known and self.held and not self.catching_up:
            return self.delivered, min(self.held)
        return None

    def settle(self) -> list[Any]:
        """The settling window passed: start at the lowest event seen."""
        if self.known or not self.held:
            return []
        self.known, self.delivered = True, min(self.held) - 1
        return self._drain()

    def skip_gap(self) -> list[Any]:
        """Give up on the missing seqs (they stay in history and come with the next sync)."""
        if not self.held:
            return []
        self.delivered = max(self.delivered, min(self.held) - 1)
        return self._drain()

    def from_history(self, seq: int, item: Any) -> list[Any]:
        """An event read from history during a catch-up: written when it follows on, with
        the held events that then follow; above a hole (history has not stored a lower seq
        yet) it waits with them. It replaces a held live copy (it carries the current state)."""
        self.known = True
        if seq > self.delivered:
            self.held[seq] = item
        return self._drain()

    def finish_catch_up(self) -> list[Any]:
        """Catch-up ended: release held live events that now follow on, in seq order."""
        self.catching_up = False
        self.known = True
        for seq in [s for s in self.held if s <= self.delivered]:
            del self.held[seq]
        return self._drain()
