"""What clients did and saw during a run, appended as it happens.

Test clients call ``sent`` for every ``send_message`` they write and ``observe`` for every
frame they read (or ``acked`` / ``failed`` / ``received`` directly). Appends take a lock
and never block on I/O, so trio tasks and threads may share one recorder.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libs.events import FRAME_TYPE

from .model import Device

# Frame and page item types that carry one stored event, and the event kind they carry.
EVENT_OF = {frame: event for event, frame in FRAME_TYPE.items()} | {e: e for e in FRAME_TYPE}
CONNECTION_LOST = "connection lost"


@dataclass(frozen=True)
class Sent:
    device: Device
    id: str
    chat_id: str
    frame: Mapping[str, Any]


@dataclass(frozen=True)
class Acked:
    device: Device
    id: str
    chat_id: str
    message_id: str
    seq: int
    at: int = 0  # place in the recorder's arrival order (0: not known)


@dataclass(frozen=True)
class Failed:
    device: Device
    id: str
    error: Any


@dataclass(frozen=True)
class Received:
    """One event a device got. ``live`` frames came over the socket and must arrive in
    seq order; fetched ones (history pages) only count towards completeness and content.
    ``at`` is its place in the recorder's arrival order, shared with acks (0: not known)."""

    device: Device
    chat_id: str
    seq: int
    event: str
    frame: Mapping[str, Any]
    live: bool = True
    at: int = 0


@dataclass(frozen=True)
class Run:
    """An immutable snapshot of a recorder, in the order things happened."""

    sent: tuple[Sent, ...] = ()
    acked: tuple[Acked, ...] = ()
    failed: tuple[Failed, ...] = ()
    received: tuple[Received, ...] = ()


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._acked: list[Acked] = []
        self._failed: list[Failed] = []
        self._received: list[Received] = []
        self._arrivals = itertools.count(1)  # one order over acks and events, for the checker

    def sent(self, device: Device, frame: Mapping[str, Any]) -> None:
        """A ``send_message`` frame the device wrote."""
        with self._lock:
            self._sent.append(Sent(device, str(frame["id"]), str(frame["chat_id"]), dict(frame)))

    def acked(self, device: Device, ack: Mapping[str, Any]) -> None:
        """A ``message_ack`` frame the device read."""
        with self._lock:
            self._acked.append(Acked(device, str(ack["id"]), str(ack["chat_id"]),
                                     str(ack["message_id"]), int(ack["seq"]), next(self._arrivals)))

    def failed(self, device: Device, id: str, error: Any = CONNECTION_LOST) -> None:
        """The send ``id`` got an ``error`` frame, or the client gave up on it (socket lost)."""
        with self._lock:
            self._failed.append(Failed(device, str(id), error))

    def received(self, device: Device, frame: Mapping[str, Any], *, live: bool = True) -> None:
        """An event frame (or, with ``live=False``, a history page item); others are ignored."""
        event = EVENT_OF.get(str(frame.get("type")))
        if event is None or "seq" not in frame:
            return
        chat_id, seq, copy = str(frame["chat_id"]), int(frame["seq"]), dict(frame)
        with self._lock:
            self._received.append(Received(device, chat_id, seq, event, copy, live,
                                           next(self._arrivals)))

    def observe(self, device: Device, frame: Mapping[str, Any]) -> None:
        """Any frame the device read: acks, errors about a send and events are recorded."""
        kind = frame.get("type")
        if kind == "message_ack":
            self.acked(device, frame)
        elif kind == "error" and frame.get("id") is not None:
            self.failed(device, str(frame["id"]), dict(frame))
        else:
            self.received(device, frame)

    def snapshot(self) -> Run:
        with self._lock:
            return Run(tuple(self._sent), tuple(self._acked), tuple(self._failed),
                       tuple(self._received))
