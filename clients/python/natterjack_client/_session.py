"""The WebSocket half of the SDK: one logical session over any number of sockets.

A ``Session`` keeps reconnecting (backoff with full jitter) until it is closed or the
server ends the login (4401). Stored events come out in dense per-chat seq order, once
each; acks are cumulative and coalesced; sends are resent with the same id after a
reconnect until their ``message_ack`` arrives (the server answers a repeat with the
original ack).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._client import _without_none
from ._errors import UNAVAILABLE, NatterjackClientError, Unavailable, from_code
from ._events import ErrorEvent, Event, MessageAck, StoredEvent, SyncRequired, parse_frame
from ._gaps import GapFiller
from ._ordering import AckCoalescer, ReconnectPolicy, SeqTracker
from ._socket import SocketLoop

if TYPE_CHECKING:
    from ._client import Client


@dataclass
class _PendingSend:
    frame: dict[str, Any]
    done: trio.Event = field(default_factory=trio.Event)
    ack: MessageAck | None = None
    error: NatterjackClientError | None = None


@dataclass(frozen=True)
class SessionOptions:
    reconnect: ReconnectPolicy = ReconnectPolicy()
    auto_ack: bool = True  # ack each stored event once the iterator handed it out
    ack_interval_s: float = 0.02  # at most one ack per chat per interval
    receive_events: bool = True  # False: a send-only session (nothing queued, nothing acked)
    buffer: int = 1000  # events waiting for the reader; a full buffer slows the socket down
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    first_connect_timeout_s: float = 30.0
    retry_unavailable_s: float = 0.5  # a send answered 5003 goes out again after this


class Session:
    """Events: ``async for event in session``. Sends: ``await session.send_message(...)``.

    ``positions`` seeds the seq the client already holds per chat (e.g. kept from an
    earlier run); without it a chat starts at the first event that arrives.
    """

    def __init__(self, client: Client, *, positions: Mapping[str, int] | None = None,
                 **options: Any):
        self.client = client
        self.options = SessionOptions(**options)
        self.tracker: SeqTracker[StoredEvent] = SeqTracker(positions)
        self.acks = AckCoalescer(self.options.ack_interval_s)
        self._to_reader, self._events = trio.open_memory_channel[Event](self.options.buffer)
        self._pending: dict[str, _PendingSend] = {}
        self._order_lock = trio.Lock()  # one task at a time turns offers into handed-on events
        self._failure: NatterjackClientError | None = None
        self._socket = SocketLoop(self)
        self._gaps = GapFiller(self)
        self.ack_wanted = trio.Event()

    # lifecycle

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Session]:
        body_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._socket.run)
            try:
                with trio.fail_after(self.options.first_connect_timeout_s):
                    await self._socket.wait_connected()
                yield self
                with trio.move_on_after(2):
                    await self.flush_acks()  # what was handed out is acked before leaving
            except trio.TooSlowError:
                body_error = self._failure or Unavailable("could not connect to the WebSocket")
            except BaseException as exc:  # re-raised below, outside the nursery: no exception group
                body_error = exc
            finally:
                nursery.cancel_scope.cancel()
        if body_error is not None:
            raise body_error

    async def __aenter__(self) -> Session:
        self._cm = self._running()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._cm.__aexit__(*exc_info)

    @property
    def connected(self) -> bool:
        return self._socket.ws is not None

    @property
    def reconnects(self) -> int:
        return max(0, self._socket.opened - 1)

    @property
    def last_close_code(self) -> int | None:
        """How the last socket ended (a close code; None: it never opened)."""
        return self._socket.last_close_code

    def positions(self) -> dict[str, int]:
        """The highest contiguous seq held per chat (keep it to resume with ``positions``)."""
        return self.tracker.positions()

    # events

    def __aiter__(self) -> Session:
        return self

    async def __anext__(self) -> Event:
        try:
            event = await self._events.receive()
        except trio.EndOfChannel:
            raise self._failure or StopAsyncIteration from None
        if self.options.auto_ack and isinstance(event, StoredEvent):
            self.ack(event.chat_id, event.seq)
        return event

    def ack(self, chat_id: str, seq: int) -> None:
        """Everything of ``chat_id`` up to ``seq`` is processed (cumulative, coalesced)."""
        held = self.tracker.held(chat_id)
        if held is not None and held > 0:
            self.acks.handed(chat_id, min(seq, held))
            self.ack_wanted.set()

    async def flush_acks(self) -> None:
        """Send the pending acks now instead of at the end of the coalescing interval."""
        for chat_id, seq in self.acks.due(trio.current_time(), force=True):
            if not await self.write({"type": "ack", "chat_id": chat_id, "seq": seq}):
                self.acks.resend_all()  # no socket: the next one sends them
                return

    # client frames

    async def send_message(self, chat_id: str, content: Any, *, content_type: str = "text",
                           content_version: int | None = None, metadata: dict[str, Any] | None = None,
                           client_id: str | None = None, timeout: float = 30.0) -> MessageAck:
        """Send and wait until the message is durable; resent on reconnect with the same id."""
        self._raise_if_failed()
        frame = {"type": "send_message", "id": client_id or uuid.uuid4().hex, "chat_id": chat_id,
                 "content_type": content_type, "content": content}
        frame.update(_without_none(content_version=content_version, metadata=metadata))
        pending = self._pending[frame["id"]] = _PendingSend(frame)
        try:
            await self.write(frame)
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            self._pending.pop(frame["id"], None)
        return _outcome(pending, timeout)

    async def send_read(self, chat_id: str, seq: int) -> None:
        await self.write({"type": "read", "chat_id": chat_id, "seq": seq})

    async def send_typing(self, chat_id: str, typing: bool = True) -> None:
        await self.write({"type": "start_typing" if typing else "stop_typing", "chat_id": chat_id})

    async def sync(self, chat_id: str, after_seq: int) -> None:
        """Ask the server to resend the chat's events above ``after_seq`` (then ``sync_done``)."""
        await self.write({"type": "sync", "chat_id": chat_id, "after_seq": after_seq})

    async def write(self, frame: dict[str, Any]) -> bool:
        """Best effort: False when no socket is open (sends go out again on reconnect)."""
        ws = self._socket.ws
        if ws is None:
            return False
        try:
            await ws.send_message(json.dumps(frame, ensure_ascii=False))
        except ConnectionClosed:
            return False
        return True

    # called by the socket loop

    async def resend_pending(self, ws: WebSocketConnection) -> None:
        for pending in list(self._pending.values()):
            if not pending.done.is_set():
                await ws.send_message(json.dumps(pending.frame, ensure_ascii=False))

    async def dispatch(self, frame: dict[str, Any]) -> None:
        event = parse_frame(frame)
        if isinstance(event, MessageAck | ErrorEvent) and event.id in self._pending:
            self._answer(self._pending[event.id], event)
        elif isinstance(event, StoredEvent):
            await self.accept(event)
        elif frame.get("type") != "pong":
            if isinstance(event, SyncRequired):
                self._gaps.catch_up(event.chat_id)
            await self.hand_on(event)

    async def accept(self, event: StoredEvent) -> None:
        """Put a stored event (live, resent or from history) in its chat's order."""
        async with self._order_lock:
            offer = self.tracker.offer(event.chat_id, event.seq, event)
            if offer.gap is not None:
                self._gaps.fill(offer.gap.chat_id)
            for ready in offer.ready:
                await self.hand_on(ready)

    async def skip_to(self, chat_id: str, seq: int) -> None:
        async with self._order_lock:
            for ready in self.tracker.skip_to(chat_id, seq).ready:
                await self.hand_on(ready)

    async def hand_on(self, event: Event) -> None:
        if self.options.receive_events:
            await self._to_reader.send(event)

    def fail(self, error: NatterjackClientError) -> None:
        """The session is over: the iterator raises ``error`` after what it holds, sends too."""
        self._failure = error
        self._to_reader.close()
        for pending in self._pending.values():
            pending.error = pending.error or error
            pending.done.set()

    def _answer(self, pending: _PendingSend, event: MessageAck | ErrorEvent) -> None:
        if isinstance(event, ErrorEvent) and event.code == UNAVAILABLE:
            self.nursery.start_soon(self._resend_later, pending)  # safe with the same id
            return
        if isinstance(event, MessageAck):
            pending.ack = event
        else:
            pending.error = from_code(event.code, event.message, event.details)
        pending.done.set()

    async def _resend_later(self, pending: _PendingSend) -> None:
        await trio.sleep(self.options.retry_unavailable_s)
        if not pending.done.is_set():
            await self.write(pending.frame)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    @property
    def failure(self) -> NatterjackClientError | None:
        return self._failure


def _outcome(pending: _PendingSend, timeout: float) -> MessageAck:
    if pending.error is not None:
        raise pending.error
    if pending.ack is None:
        raise Unavailable(f"no message_ack within {timeout} s (safe to resend with the same client_id)")
    return pending.ack

