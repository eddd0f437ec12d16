"""One client socket: a bounded outbound queue drained by a writer task, and the
per-chat order state of what it has been sent.

A client that stops reading fills its queue and is closed with 4408 rather than being
allowed to grow memory or hold up deliveries to other sockets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from libs import ids, metrics
from libs.tokens import Claims

from .domain import ChatOrder
from .outbox import Outbox

CLOSE_SESSION_ENDED = 4401
CLOSE_TOKEN_EXPIRED = 4402
CLOSE_SLOW_CONSUMER = 4408
CLOSE_KEEPALIVE_TIMEOUT = 4409
CLOSE_GOING_AWAY = 1001
FINISH_FRAME_S = 2.0  # after a close, for the frame being written to get out whole
FRAME_SEND_LIMIT_S = 30.0  # a peer that takes no whole frame for this long is not reading
WRITER_LINGER_S = 5.0  # a writer task outlives its last frame this long
# Stands in the order for an event the device already holds (its own message, acked):
# it advances the chat's order like any event but is never written.
ALREADY_HELD = "\x00held"


@dataclass(eq=False, slots=True, weakref_slot=True)
class Connection:
    ws: WebSocketConnection
    claims: Claims
    queue_size: int
    connection_id: str = field(default_factory=ids.new_id)
    chats: dict[str, ChatOrder] = field(default_factory=dict)
    catching_up_all: bool = True
    # Made when first needed (most sockets idle; tens of thousands per process):
    held_all: list[tuple[str, int, str]] | None = None  # live events while the catch-up plans
    typing: dict[str, trio.CancelScope] | None = None  # chat -> its typing expiry
    closed: trio.Event = field(default_factory=trio.Event)
    nursery: trio.Nursery | None = None  # the connection's own, for its background tasks
    on_gap: Callable[[Connection, str], None] | None = None
    reading: trio.CancelScope | None = None  # the reader's frame loop, from the first frame on
    # Keepalive (SocketTimers), trio time: the next ping; the pong awaited by then (inf: none).
    ping_due: float = field(default=math.inf, init=False)
    pong_due: float = field(default=math.inf, init=False)
    pong_queued: bool = field(default=False, init=False)  # in SocketTimers' pong queue
    close_code: int = field(default=1000, init=False)
    close_reason: str = field(default="", init=False)
    _outbox: Outbox = field(init=False)
    _sending: trio.CancelScope | None = field(default=None, init=False)
    _writing: bool = field(default=False, init=False)  # a writer task runs

    def __post_init__(self) -> None:
        self._outbox = Outbox(self.queue_size)

    @property
    def user_id(self) -> str:
        return self.claims.user_id

    @property
    def device_id(self) -> str:
        return self.claims.device_id

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.send_text(orjson.dumps(frame).decode())

    def send_text(self, text: str) -> None:
        if text is ALREADY_HELD:
            return
        if self._outbox.put(text):
            self.start_writer()
        elif not self._outbox.closed:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect and sync")

    def deliver(self, chat_id: str, seq: int, text: str) -> None:
        """A live event: written now, held (catch-up running) or dropped (already sent)."""
        if self.catching_up_all:
            if self.held_all is None:
                self.held_all = []
            self.held_all.append((chat_id, seq, text))
            return
        self.write_in_order(chat_id, seq, text)

    def write_in_order(self, chat_id: str, seq: int, text: str) -> None:
        order = self.order(chat_id)
        for item in order.offer(seq, text):
            self.send_text(item)
        self.watch(chat_id)

    def watch(self, chat_id: str) -> None:
        """Start filling a gap (or settling a new chat) unless that is already under way."""
        order = self.chats.get(chat_id)
        if order and order.held and not order.catching_up and not order.watching \
                and self.on_gap is not None:
            order.watching = True
            self.on_gap(self, chat_id)

    def order(self, chat_id: str) -> ChatOrder:
        state = self.chats.get(chat_id)
        if state is None:
            state = self.chats[chat_id] = ChatOrder()
        return state

    def release_held_all(self) -> None:
        self.catching_up_all = False
        held, self.held_all = self.held_all or (), None
        for chat_id, seq, text in held:
            self.deliver(chat_id, seq, text)

    def finish(self, code: int, reason: str) -> None:
        """Close once every frame already queued is written (going away: the answers to
        the requests it took still reach the client)."""
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self._outbox.close()
            self.start_writer()

    def close(self, code: int, reason: str) -> None:
        """Close now: the connection's tasks (its reader among them) are cancelled."""
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed.set()
            if self.nursery is not None:
                self.nursery.cancel_scope.cancel()
            if self._sending is not None:
                self._sending.deadline = min(self._sending.deadline, trio.current_time() + FINISH_FRAME_S)

    def start_writer(self) -> None:
        """A writer task while there is something to write (or a queue to finish): an idle
        socket has none; one lingers WRITER_LINGER_S after its last frame, so a busy socket
        keeps its writer rather than starting one per frame."""
        if self._writing or self.nursery is None or self.closed.is_set() \
                or not (self._outbox or self._outbox.closed):
            return
        self._writing = True
        try:
            self.nursery.start_soon(self.writer)
        except RuntimeError:  # the socket's tasks already ended
            self._writing = False

    async def writer(self) -> None:
        """Drain the outbound queue into the socket until the socket or queue closes, or
        nothing came for WRITER_LINGER_S.

        A frame once started is not cancelled with the connection but given FINISH_FRAME_S
        to get out: a frame cut in half would garble the close frame (4408 …) after it."""
        self._writing = True
        try:
            finished: bool | None = await self._drain()
        except ConnectionClosed:
            finished = None
        finally:  # cancelled too: the connection's tasks are ending
            self._writing = False
        if finished is None:
            self.close(1006, "socket closed")
        elif finished:
            self.close(self.close_code, self.close_reason)  # finish(): the queue is written
        else:
            self.start_writer()  # a frame queued as this one stopped lingering

    async def _drain(self) -> bool:
        """Write what comes; True once the queue is finished and written, False when the
        writer stops before that (lingered out, closed, or a frame was cut)."""
        while True:
            with trio.move_on_after(WRITER_LINGER_S) as lingering:
                text = await self._outbox.get()
            if lingering.cancelled_caught:  # idle: the next frame starts a writer again
                return False
            if text is None:
                return True
            if self.closed.is_set():  # closed, not finished: nothing more is written
                return False
            if not await self._write_queued(text):  # cut: nothing after it could be read
                self.close(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect and sync")
                return False

    async def _write_queued(self, text: str) -> bool:
        """Write ``text`` and the frames queued behind it under one shielded scope (a fan-out
        queues many at once; one scope per frame costs more than the write). Each frame gets
        FRAME_SEND_LIMIT_S; none starts after a close. False when a frame was cut."""
        written = 0
        with trio.CancelScope(shield=True) as self._sending:
            while True:
                self._sending.deadline = trio.current_time() + FRAME_SEND_LIMIT_S
                await self.ws.send_message(text)
                written += 1
                if self.closed.is_set():
                    break
                if (queued := self._outbox.get_nowait()) is None:
                    break
                text = queued
        metrics.message_out(written)
        return not self._sending.cancelled_caught
