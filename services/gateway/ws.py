"""The WebSocket edge: authenticate at the handshake, then one nursery per connection
(reader, writer, token expiry, catch-up), with timeouts turned into close codes."""

from __future__ import annotations

import ssl
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from libs import ids, log, metrics, rpc
from libs.cache import CacheUnavailable
from libs.errors import INTERNAL, NatterjackError, Unauthenticated, Unavailable
from libs.tokens import Claims

from . import domain
from .config import Config
from .connection import CLOSE_GOING_AWAY, Connection
from .handlers import FrameHandlers, Hub
from .keys import KeyRing
from .storage import Presence
from .timers import SocketTimers

logger = log.get("gateway.ws")
CLOSE_WAIT_S = 2.0  # for the client's close frame; a vanished peer never sends one


class WebSocketEdge:
    def __init__(self, config: Config, gateway_id: str, hub: Hub, frames: FrameHandlers,
                 keys: KeyRing, presence: Presence | None):
        self.config = config
        self.gateway_id = gateway_id
        self.hub = hub
        self.frames = frames
        self.keys = keys
        self.presence = presence
        self.accepting = True
        self.timers = SocketTimers(config.ping_interval_s, config.ping_timeout_s)

    async def serve(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        context = None
        if self.config.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.timers.run)
            await serve_websocket(self.handle, self.config.ws_host, self.config.ws_port, context,
                                  max_message_size=self.config.max_frame_bytes * 4,
                                  connect_timeout=self.config.handshake_timeout_s,
                                  disconnect_timeout=2, task_status=task_status)

    async def authenticate(self, request: WebSocketRequest) -> Claims:
        token = domain.token_from(request.path, list(request.headers))
        if not token or not self.accepting:
            raise Unauthenticated("missing access token")
        claims = await self.keys.verify(token)
        try:
            await rpc.call(self.frames.bus, "im.auth.verify", {"session_id": claims.session_id},
                           timeout=self.config.common.request_timeout)
        except Unavailable:
            logger.warning("gateway.session_check_unavailable", session_id=claims.session_id)
        return claims

    async def handle(self, request: WebSocketRequest) -> None:
        # One trace for the connection (handshake check, catch-up); each frame gets its own.
        log.bind_trace(domain.header(list(request.headers), log.TRACE_HEADER))
        try:
            claims = await self.authenticate(request)
        except NatterjackError as exc:
            status = exc.http_status if self.accepting else 503
            await request.reject(status, body=orjson.dumps({"error": exc.to_body()}))
            return
        ws = await request.accept()
        conn = Connection(ws, claims, self.config.send_queue, on_gap=self.frames.catch_up.start_gap_watch)
        try:
            await self.run_connection(conn)
        except Exception:  # one broken connection must never take the server down
            logger.exception("gateway.connection_failed", user_id=conn.user_id)

    async def run_connection(self, conn: Connection) -> None:
        """One task a socket while it is idle: this one, reading frames. A writer drains
        the outbound queue while there is something to write; the catch-up runs beside
        them for the first seconds. Pings and token expiry come from the gateway's
        SocketTimers. conn.close() cancels the connection's nursery, this task's reading
        with it."""
        self.hub.add(conn)
        metrics.CONNECTIONS.inc()
        try:
            await self._came_online(conn)
            async with trio.open_nursery() as nursery:
                conn.nursery = nursery
                try:
                    if conn.closed.is_set():  # closed before it had tasks (session ended …)
                        nursery.cancel_scope.cancel()
                    if not self.accepting:  # accepted just before going away
                        conn.finish(CLOSE_GOING_AWAY, "server going away")
                    conn.start_writer()  # frames queued while it came online
                    nursery.start_soon(self.frames.catch_up.on_connect, conn)
                    self.timers.watch(conn)
                    await self._reader(conn)
                    await conn.closed.wait()
                finally:
                    # Before the nursery closes: a delivery must not start a task in it then.
                    self.hub.remove(conn)
                nursery.cancel_scope.cancel()
        finally:
            self.hub.remove(conn)
            metrics.CONNECTIONS.dec()
            with trio.CancelScope(shield=True):
                # Apart: a peer that never answers the close must not keep its device online.
                with trio.move_on_after(CLOSE_WAIT_S):
                    await conn.ws.aclose(conn.close_code, conn.close_reason)
                with trio.move_on_after(CLOSE_WAIT_S):
                    await self._went_offline(conn)

    async def _came_online(self, conn: Connection) -> None:
        """Register the device; the user's first live device makes the user online."""
        if self.presence is None:
            return
        try:
            devices = await self.presence.register(conn.user_id, conn.device_id, conn.connection_id,
                                                   ids.now_ms())
        except CacheUnavailable:
            logger.warning("gateway.presence_unavailable")
            return
        if set(devices) <= {conn.device_id}:
            await self._announce(conn.user_id, "online")

    async def _went_offline(self, conn: Connection) -> None:
        """Remove the device; the user's last live device leaving makes the user offline."""
        if self.presence is None:
            return
        try:
            if await self.presence.unregister(conn.user_id, conn.device_id, conn.connection_id,
                                              ids.now_ms()):
                return
        except CacheUnavailable:
            logger.warning("gateway.presence_unavailable")
            return
        await self._announce(conn.user_id, "offline")

    async def _announce(self, user_id: str, status: str) -> None:
        event = {"user_id": user_id, "status": status, "last_seen_ts": ids.now_ms()}
        await self.frames.bus.publish(f"im.evt.presence.{user_id}", orjson.dumps(event))

    async def _reader(self, conn: Connection) -> None:
        """Take frames until the client closes or the gateway goes away; going away, the
        frames already taken are answered first, then the socket closes with 1001. Most
        sockets are idle: the nursery, limiter and cancel scope for their frames come with
        the first (until then going away finishes the socket straight away)."""
        try:
            text = await conn.ws.get_message()
        except ConnectionClosed:
            conn.close(1000, "client closed")
            return
        if not self.accepting:  # going away as it came: finished already
            return
        limiter = trio.CapacityLimiter(self.config.sends_in_flight)
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as conn.reading:
                try:
                    while True:
                        await limiter.acquire_on_behalf_of(token := object())
                        nursery.start_soon(self._one_frame, conn, text, limiter, token)
                        text = await conn.ws.get_message()
                except ConnectionClosed:
                    conn.close(1000, "client closed")
        if conn.reading.cancelled_caught:
            conn.finish(CLOSE_GOING_AWAY, "server going away")

    async def _one_frame(self, conn: Connection, text: str | bytes, limiter: trio.CapacityLimiter,
                         token: object) -> None:
        frame: dict[str, Any] = {}
        log.bind_trace(None)
        try:
            frame = domain.parse_frame(text, self.config.max_frame_bytes)
            if frame["type"] == "auth":
                await self._reauth(conn, frame["token"])
                return
            reply = await self.frames.table[frame["type"]](conn, frame)
            if reply is not None:
                conn.send_frame(reply)
        except NatterjackError as exc:
            frame_id = frame.get("id") if frame else domain.frame_id(text)
            conn.send_frame({"type": "error", **exc.to_body(), **({"id": frame_id} if frame_id else {})})
        except Exception:
            logger.exception("gateway.frame_failed", frame_type=frame.get("type"))
            conn.send_frame({"type": "error", "code": INTERNAL, "message": "internal error"})
        finally:
            limiter.release_on_behalf_of(token)

    async def _reauth(self, conn: Connection, token: str) -> None:
        claims = await self.keys.verify(token)
        if (claims.user_id, claims.device_id) != (conn.user_id, conn.device_id):
            raise Unauthenticated("token belongs to another user or device")
        conn.claims = claims

    def go_away(self) -> None:
        """SIGTERM: stop accepting and taking frames; each socket closes with 1001 (reconnect,
        possibly elsewhere) once the frames it already took are answered."""
        self.accepting = False
        for conn in self.hub.all():
            if conn.reading is None:  # no frame taken yet: nothing to answer first
                conn.finish(CLOSE_GOING_AWAY, "server going away")
            else:
                conn.reading.cancel()
