"""Messages as trio code sees them: plain data plus the few replies a handler may send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..log import TRACE_HEADER

if TYPE_CHECKING:
    from ._bus import Bus

STATUS_HEADER = "Status"
NO_RESPONDERS = "503"


@dataclass(slots=True, eq=False)
class Message:
    subject: str
    data: bytes
    reply: str
    headers: dict[str, str] | None
    bus: Bus = field(repr=False)

    @property
    def trace_id(self) -> str | None:
        return self.headers.get(TRACE_HEADER) if self.headers else None

    @property
    def is_no_responders(self) -> bool:
        return bool(self.headers and self.headers.get(STATUS_HEADER) == NO_RESPONDERS and not self.data)

    async def respond(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        if self.reply:
            await self.bus.publish(self.reply, data, headers=headers)


@dataclass(slots=True, eq=False)
class JsMessage(Message):
    """A JetStream message from a pull consumer; settle it with ack, nak or term."""

    stream_seq: int = 0
    num_delivered: int = 1

    def ack(self) -> None:
        self.bus.publish_nowait(self.reply, b"+ACK")

    def nak(self, delay: float | None = None) -> None:
        body = b"-NAK" if delay is None else b'-NAK {"delay": %d}' % int(delay * 1e9)
        self.bus.publish_nowait(self.reply, body)

    def term(self) -> None:
        self.bus.publish_nowait(self.reply, b"+TERM")

    def in_progress(self) -> None:
        self.bus.publish_nowait(self.reply, b"+WPI")


@dataclass(frozen=True, slots=True)
class PubAck:
    stream: str
    seq: int
    duplicate: bool
