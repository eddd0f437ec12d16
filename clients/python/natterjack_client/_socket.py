"""The reconnect loop of a session: open a socket, serve it until it closes, decide what next
from the close code (4402 refresh, 4401 give up, everything else back off and retry)."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ._errors import (
    CLOSE_SESSION_ENDED,
    CLOSE_TOKEN_EXPIRED,
    LoginRequired,
    NatterjackClientError,
    Unavailable,
)

if TYPE_CHECKING:
    from ._session import Session

REJECTED_401 = -401  # pseudo close code: the handshake was refused for the token


class SocketLoop:
    def __init__(self, session: Session):
        self.session = session
        self.ws: WebSocketConnection | None = None
        self.opened = 0  # sockets opened so far
        self.last_close_code: int | None = None
        self._socket_token: str | None = None  # the access token the last socket opened with
        self._changed = trio.Event()  # set on connect and on failure

    async def wait_connected(self) -> None:
        while self.ws is None:
            if self.session.failure is not None:
                raise self.session.failure
            await self._changed.wait()

    async def run(self) -> None:
        try:
            await self._reconnect_forever()
        except NatterjackClientError as exc:
            self.session.fail(exc)
            self._changed.set()

    async def _reconnect_forever(self) -> None:
        policy, attempt = self.session.options.reconnect, 0
        refreshed = False
        while True:
            began = trio.current_time()
            code = self.last_close_code = await self._one_socket()
            if trio.current_time() - began >= policy.stable_after_s:
                attempt = 0
            if code in (CLOSE_TOKEN_EXPIRED, REJECTED_401):
                if code == REJECTED_401 and refreshed:
                    raise LoginRequired("the server refused the refreshed token: log in again")
                if await self._refreshed():
                    refreshed = code == REJECTED_401
                    continue
            refreshed = False
            if code == CLOSE_SESSION_ENDED:
                raise LoginRequired("the session was ended (logout or revoked): log in again",
                                    close_code=CLOSE_SESSION_ENDED)
            if policy.gives_up(attempt):
                raise Unavailable(f"gave up reconnecting after {attempt} attempts")
            await trio.sleep(policy.delay(attempt))
            attempt += 1

    async def _refreshed(self) -> bool:
        """A new token pair; False when auth is unreachable for now (back off, try again)."""
        try:  # the token this socket used: a refresh made meanwhile (REST 401) is not repeated
            await self.session.client.refresh(self._socket_token)
        except Unavailable:
            return False
        return True

    async def _one_socket(self) -> int | None:
        """The close code of one socket; None when none opened (network, timeout, 5xx)."""
        credentials = self.session.client._require_credentials()
        self._socket_token = credentials.access_token
        headers = [(b"Authorization", f"Bearer {credentials.access_token}".encode())]
        try:
            async with open_websocket_url(credentials.ws_url, extra_headers=headers,
                                          connect_timeout=self.session.options.connect_timeout_s,
                                          disconnect_timeout=2) as ws:
                await self._serve(ws)
                return ws.closed.code if ws.closed else None
        except ConnectionRejected as exc:
            return REJECTED_401 if exc.status_code == 401 else None
        except (HandshakeError, OSError, ConnectionClosed):
            return None

    async def _serve(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.opened += 1
        self._changed.set()
        self._changed = trio.Event()
        self.session.acks.resend_all()
        self.session.ack_wanted.set()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_closing_quietly, self._flush_acks, ws)
                nursery.start_soon(_closing_quietly, self._keepalive, ws)
                await _closing_quietly(self.session.resend_pending, ws)
                await self._read(ws)
                nursery.cancel_scope.cancel()
        finally:
            self.ws = None

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            try:
                text = await ws.get_message()
            except ConnectionClosed:
                return
            try:
                frame = json.loads(text)
            except ValueError:
                continue  # not ours to judge; the contract promises JSON objects
            if isinstance(frame, dict):
                await self.session.dispatch(frame)

    async def _flush_acks(self, ws: WebSocketConnection) -> None:
        session = self.session
        while True:
            await session.ack_wanted.wait()
            session.ack_wanted = trio.Event()
            await trio.sleep(session.options.ack_interval_s)  # coalesce what comes meanwhile
            for chat_id, seq in session.acks.due(trio.current_time()):
                await ws.send_message(json.dumps({"type": "ack", "chat_id": chat_id, "seq": seq}))

    async def _keepalive(self, ws: WebSocketConnection) -> None:
        """A peer that vanished without closing would otherwise hold the session forever."""
        options = self.session.options
        while True:
            await trio.sleep(options.ping_interval_s)
            with trio.move_on_after(options.ping_timeout_s) as timer:
                await ws.ping()
            if timer.cancelled_caught:
                await ws.aclose(4000, "no pong")
                return


async def _closing_quietly(task, ws: WebSocketConnection) -> None:  # type: ignore[no-untyped-def]
    """Run ``task(ws)``; the socket closing under it ends it (the reader notices the close)."""
    with contextlib.suppress(ConnectionClosed):
        await task(ws)
