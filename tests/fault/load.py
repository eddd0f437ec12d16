"""The load driver: WebSocket clients that keep sending while a fault hits the stack.

Each ``LoadClient`` is one logged-in device in one chat. It reconnects when its socket is
lost (backoff with jitter) and resumes the way the contract says: the gateway catches it
up from its acked cursor on connect, and at the end it asks ``sync`` from the highest seq
it holds without a hole. Its sends stay pending until a ``message_ack``; a send whose
socket died is recorded as connection-lost and written again with the same client id
(the router answers a repeat with the original ack), one answered with 5003 is retried
the same way after a backoff, any other error is final. Everything is recorded for the
history checker. ``Load`` offers sends at a fixed rate over all clients until a deadline.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.checker import Device, Recorder
from tests.e2e.client import User

STORED = ("new_message", "message_updated", "chat_updated", "void")
RETRYABLE = (5003, 4029)
MAX_PENDING = 50  # per client: a client that cannot get answers stops being offered more


@dataclass
class Pending:
    frame: dict[str, Any]
    offered_at: float
    socket: int | None = None  # the connection it was last written on; None: not yet/again
    retry_at: float = 0.0
    attempts: int = 0


@dataclass
class Figures:
    """What the clients saw, for the fault's record."""

    offered: int = 0
    shed: int = 0  # not offered: the client already had MAX_PENDING sends unanswered
    writes: int = 0
    acked: int = 0
    errors: int = 0  # error frames about a send (each retryable one is retried)
    failed_final: int = 0  # sends given up with a non-retryable error
    connection_lost: int = 0  # writes whose socket died before an answer (written again)
    reconnects: int = 0
    connect_failures: int = 0
    sync_required: int = 0
    last_error: str = ""
    error_codes: dict[str, int] = field(default_factory=dict)  # error answers by code
    acks: list[tuple[float, float]] = field(default_factory=list)  # (offered_at, latency)
    answers_at: list[float] = field(default_factory=list)  # when each ack arrived


class LoadClient:
    def __init__(self, user: User, ws_url: str, recorder: Recorder, figures: Figures) -> None:
        self.user, self.ws_url, self.recorder, self.figures = user, ws_url, recorder, figures
        self.device = Device(user.user_id, user.device_id)
        self.chat_id = ""
        self.ws: WebSocketConnection | None = None
        self.socket = 0
        self.pending: dict[str, Pending] = {}
        self.held: set[int] = set()
        self.cursor = 0  # highest seq held with nothing missing below it
        self.acked_cursor = 0
        self.connected = trio.Event()
        self.synced: trio.Event | None = None
        self.sync_upto = 0

    # ---- sending --------------------------------------------------------------------------
    def offer(self, text: str) -> bool:
        if len(self.pending) >= MAX_PENDING:
            self.figures.shed += 1
            return False
        frame = {"type": "send_message", "id": secrets.token_hex(8), "chat_id": self.chat_id,
                 "content": text}
        self.pending[frame["id"]] = Pending(frame, trio.current_time())
        self.figures.offered += 1
        return True

    async def _flush(self) -> None:
        """Write every pending send that is not on the current socket and is due."""
        now, ws = trio.current_time(), self.ws
        for pending in list(self.pending.values()):
            if ws is None or ws is not self.ws:
                return
            if pending.socket is None and pending.retry_at <= now:
                pending.socket, pending.attempts = self.socket, pending.attempts + 1
                self.recorder.sent(self.device, pending.frame)
                self.figures.writes += 1
                try:
                    await ws.send_message(orjson.dumps(pending.frame).decode())
                except ConnectionClosed:
                    return  # the reader notices and records the loss

    async def _flusher(self) -> None:
        while True:
            await self._flush()
            await trio.sleep(0.02)

    # ---- the connection loop --------------------------------------------------------------
    async def run(self, stop: trio.Event) -> None:
        """Stay connected (reconnecting with backoff) until ``stop`` is set."""
        delay = 0.2
        while not stop.is_set():
            url = f"{self.ws_url}?token={self.user.access_token}"
            try:
                async with open_websocket_url(url, connect_timeout=15, disconnect_timeout=2) as ws:
                    delay = 0.2
                    try:
                        await self._connected(ws, stop)
                    finally:
                        self._lost(recorded=not stop.is_set())
                continue
            except Exception as exc:  # noqa: BLE001 - refused, rejected, reset: try again
                self.figures.connect_failures += 1
                self.figures.last_error = repr(exc)[:300]
            await trio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)

    async def _connected(self, ws: WebSocketConnection, stop: trio.Event) -> None:
        self.socket += 1
        if self.socket > 1:
            self.figures.reconnects += 1
        self.ws, self.acked_cursor = ws, 0  # ack the cursor again on the new socket
        self.connected.set()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flusher)
                nursery.start_soon(self._acker)
                nursery.start_soon(self._stopper, stop, nursery.cancel_scope)
                await self._read(ws)
                nursery.cancel_scope.cancel()
        finally:
            self.ws = None

    async def _stopper(self, stop: trio.Event, scope: trio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    def _lost(self, recorded: bool) -> None:
        """The socket is gone: unanswered writes on it are recorded lost and written again
        (not when the run is over: what is unanswered then stays unanswered)."""
        self.ws = None
        self.connected = trio.Event()
        for pending in self.pending.values():
            if pending.socket == self.socket and recorded:
                self.recorder.failed(self.device, pending.frame["id"])
                self.figures.connection_lost += 1
                pending.socket = None

    async def _read(self, ws: WebSocketConnection) -> None:
        try:
            while True:
                self._on_frame(orjson.loads(await ws.get_message()))
        except ConnectionClosed:
            pass

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        self.recorder.observe(self.device, frame)
        if kind == "message_ack":
            self._on_ack(frame)
        elif kind == "error" and frame.get("id") is not None:
            self._on_error(frame)
        elif kind in STORED:
            self._hold(int(frame["seq"]))
        elif kind == "sync_done" and self.synced is not None:
            self.sync_upto = max(self.sync_upto, int(frame["last_seq"]))
            self.synced.set()
        elif kind == "sync_required":
            self.figures.sync_required += 1

    def _on_ack(self, frame: dict[str, Any]) -> None:
        pending = self.pending.pop(str(frame["id"]), None)
        self._hold(int(frame["seq"]))
        if pending is not None:
            now = trio.current_time()
            self.figures.acked += 1
            self.figures.acks.append((pending.offered_at, now - pending.offered_at))
            self.figures.answers_at.append(now)

    def _on_error(self, frame: dict[str, Any]) -> None:
        self.figures.errors += 1
        code = str(frame.get("code"))
        self.figures.error_codes[code] = self.figures.error_codes.get(code, 0) + 1
        pending = self.pending.get(str(frame["id"]))
        if pending is None:
            return
        if frame.get("code") in RETRYABLE:
            pending.socket = None
            pending.retry_at = trio.current_time() + min(0.25 * 2 ** pending.attempts, 4.0)
        else:
            del self.pending[str(frame["id"])]
            self.figures.failed_final += 1

    def _hold(self, seq: int) -> None:
        self.held.add(seq)
        while self.cursor + 1 in self.held:
            self.cursor += 1

    async def _acker(self) -> None:
        """Cumulative acks of what the device holds, coalesced like a real client's."""
        while True:
            await trio.sleep(0.3)
            if self.cursor > self.acked_cursor and self.ws is not None:
                cursor = self.cursor
                frame = {"type": "ack", "chat_id": self.chat_id, "seq": cursor}
                try:
                    await self.ws.send_message(orjson.dumps(frame).decode())
                except ConnectionClosed:
                    return  # the reader notices; the next socket acks again
                self.acked_cursor = cursor

    # ---- the end of a run -----------------------------------------------------------------
    async def sync(self, timeout: float) -> bool:
        """``sync`` from the cursor until ``sync_done``; False if it did not come in time."""
        with trio.move_on_after(timeout):
            while True:
                await self.connected.wait()
                ws, self.synced = self.ws, trio.Event()
                try:
                    assert ws is not None
                    await ws.send_message(orjson.dumps(
                        {"type": "sync", "chat_id": self.chat_id, "after_seq": self.cursor}).decode())
                except (ConnectionClosed, AssertionError):
                    continue
                with trio.move_on_after(10):
                    await self.synced.wait()
                    return True
        return False


class Load:
    """Offers ``rate`` sends per second, spread over ``clients``, until ``deadline``."""

    def __init__(self, clients: list[LoadClient], rate: float) -> None:
        self.clients, self.rate = clients, rate

    async def offer_until(self, deadline: float) -> None:
        """Credit accrues with the clock (at most 0.25 s worth at once, so a starved loop
        offers in small bursts, not one flood), spent round-robin over the clients."""
        credit, turn, last = 0.0, 0, trio.current_time()
        while (now := trio.current_time()) < deadline:
            credit += self.rate * min(now - last, 0.25)
            last = now
            while credit >= 1:
                credit -= 1
                client = self.clients[turn % len(self.clients)]
                turn += 1
                client.offer(f"m{turn} {secrets.token_hex(6)}")
            await trio.sleep(0.02)

    def still_pending(self) -> list[str]:
        """Sends without a final answer: id, writes, and whether one is on a socket now."""
        now = trio.current_time()
        return [f"{id} writes={p.attempts} on_socket={p.socket is not None} "
                f"retry_in={p.retry_at - now:.1f}s connected={c.ws is not None}"
                for c in self.clients for id, p in c.pending.items()][:20]

    def unanswered(self) -> int:
        return sum(len(c.pending) for c in self.clients)

    async def drain(self, timeout: float) -> bool:
        """Wait until every offered send got its ack or a final error."""
        with trio.move_on_after(timeout):
            while True:
                if not self.unanswered():
                    return True
                await trio.sleep(0.1)
        return False
