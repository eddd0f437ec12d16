"""A WebSocket client that does nothing by itself: wsproto over a bare TCP socket.

WebSocket libraries answer pings from a background reader; this one answers only when
the test says so and reads only when the test reads, so a test can play a peer that
vanished (no pongs, no FIN) or one that stopped reading (TCP backpressure).
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Ping, Request, TextMessage


class RawSocket:
    def __init__(self, stream: trio.SocketStream, ws: WSConnection):
        self.stream, self.ws = stream, ws
        self.pending: deque[Event] = deque()
        self.parts: list[str] = []

    async def next_event(self, timeout: float) -> Event:
        """The next ping, close or whole text message (parts joined); EOFError at TCP end."""
        with trio.fail_after(timeout):
            while True:
                while self.pending:
                    event = self.pending.popleft()
                    if not isinstance(event, TextMessage):
                        return event
                    self.parts.append(event.data)
                    if event.message_finished:
                        text, self.parts = "".join(self.parts), []
                        return TextMessage(data=text)
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("the server closed the TCP connection")
                self.ws.receive_data(data)
                self.pending.extend(self.ws.events())

    async def answer(self, ping: Ping) -> None:
        await self.stream.send_all(self.ws.send(ping.response()))

    async def frames_until(self, done: Any, timeout: float, *, pong: bool) -> list[dict[str, Any]]:
        """Frames read until ``done(frame)`` is true; pings answered only when ``pong``."""
        frames: list[dict[str, Any]] = []
        with trio.fail_after(timeout):
            while True:
                event = await self.next_event(timeout)
                if isinstance(event, Ping) and pong:
                    await self.answer(event)
                elif isinstance(event, TextMessage):
                    frames.append(orjson.loads(event.data))
                    if done(frames[-1]):
                        return frames
                elif isinstance(event, CloseConnection):
                    raise AssertionError(f"closed early: {event.code} {event.reason}")

    async def answer_next_ping(self, timeout: float) -> None:
        """Read (dropping frames) until a ping comes, and answer it."""
        with trio.fail_after(timeout):
            while not isinstance(event := await self.next_event(timeout), Ping):
                pass
            await self.answer(event)

    async def frames_until_close(self, timeout: float) -> tuple[list[dict[str, Any]], CloseConnection]:
        """Everything the server writes up to its close frame; pings are left unanswered."""
        frames: list[dict[str, Any]] = []
        with trio.fail_after(timeout):
            while not isinstance(event := await self.next_event(timeout), CloseConnection):
                if isinstance(event, TextMessage):
                    frames.append(orjson.loads(event.data))
        return frames, event

    async def read_slowly(self, bytes_per_s: int = 40_000) -> None:
        """Read at a trickle and answer nothing: a consumer slower than its events."""
        while data := await self.stream.receive_some(2048):
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
            await trio.sleep(len(data) / bytes_per_s)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_raw(ws_url: str, token: str, *, receive_buffer: int | None = None) -> RawSocket:
    """Connect and complete the handshake. ``receive_buffer`` shrinks the socket's kernel
    buffer (set before connecting, so the advertised window is small from the start)."""
    url = urlsplit(ws_url)
    sock = trio.socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect((url.hostname, url.port))
    raw = RawSocket(trio.SocketStream(sock), WSConnection(ConnectionType.CLIENT))
    request = Request(host=url.netloc, target=f"{url.path}?token={token}")
    await raw.stream.send_all(raw.ws.send(request))
    accepted = await raw.next_event(10)
    assert isinstance(accepted, AcceptConnection), accepted
    return raw
