"""What the gateway does with each client frame and each bus delivery (no SQL or Redis).

Frames become requests to the owning service; the answer (or its error) goes back to
the socket. Deliveries from router and delivery-retry fan out to local sockets, with the
frame text serialised once per event, not once per socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio

from libs import events, ids, metrics, rpc
from libs.bus import Bus
from libs.errors import NatterjackError

from .catch_up import CatchUp
from .config import Config
from .connection import ALREADY_HELD, Connection

TYPING_EXPIRY_S = 5.0
FrameHandler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Hub:
    """The sockets this gateway holds, by user (a list: a user has a few devices, and a
    one-socket list is a quarter of a one-socket set)."""

    def __init__(self) -> None:
        self.by_user: dict[str, list[Connection]] = {}

    def add(self, conn: Connection) -> None:
        conns = self.by_user.setdefault(conn.user_id, [])
        if conn not in conns:
            conns.append(conn)

    def remove(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.by_user[conn.user_id]

    def all(self) -> list[Connection]:
        return [conn for conns in self.by_user.values() for conn in conns]

    def deliver(self, payload: dict[str, Any]) -> None:
        if "frame" in payload:
            self.deliver_frame(payload["targets"], orjson.dumps(payload["frame"]).decode())
            return
        if "resend" in payload:
            self.resend(payload["targets"], payload["chat_id"], payload["resend"])
            return
        event = payload["event"]
        text = orjson.dumps(events.to_frame(event)).decode()
        metrics.DELIVERY_LATENCY.observe(max(0.0, ids.now_ms() - event["ts"]) / 1000)
        chat_id, seq = event["chat_id"], event["seq"]
        # The sending device has its message_ack instead of the event.
        sender = (event.get("sender_id"), event.get("sender_device_id")) \
            if event["event"] == "message" else None
        by_user = self.by_user
        for target in payload["targets"]:
            conns = by_user.get(target["user_id"])
            if not conns:
                continue
            device_id = target.get("device_id")
            for conn in conns:
                if device_id is not None and device_id != conn.device_id:
                    continue
                own = sender is not None and sender == (conn.user_id, conn.device_id)
                conn.deliver(chat_id, seq, ALREADY_HELD if own else text)

    def resend(self, targets: list[dict[str, Any]], chat_id: str, frames: list[dict[str, Any]]) -> None:
        """delivery-retry's redelivery of a device's unacked range, in seq order: what this
        socket was already sent is written again (the client did not ack it, so it may have
        been lost on the way); the rest joins the chat's order like a live event (held
        while a catch-up runs). Before the connect-time plan is known nothing counts as
        sent yet, so everything goes the live way."""
        metrics.REDELIVERED.inc(len(frames))
        texts = [(frame["seq"], orjson.dumps(frame).decode()) for frame in frames]
        for target in targets:
            for conn in self.by_user.get(target["user_id"], ()):
                if target.get("device_id", conn.device_id) != conn.device_id:
                    continue
                sent_up_to = 0 if conn.catching_up_all else conn.order(chat_id).delivered
                for seq, text in texts:
                    if seq <= sent_up_to:
                        conn.send_text(text)
                    else:
                        conn.deliver(chat_id, seq, text)

    def deliver_frame(self, targets: list[dict[str, Any]], text: str) -> None:
        """An ephemeral frame (receipt, typing, presence …): written as-is, no seq order."""
        for target in targets:
            for conn in self.by_user.get(target["user_id"], ()):
                if target.get("device_id", conn.device_id) == conn.device_id:
                    conn.send_text(text)

    def end_session(self, user_id: str, session_id: str, code: int, reason: str) -> None:
        for conn in list(self.by_user.get(user_id, ())):
            if conn.claims.session_id == session_id:
                conn.close(code, reason)


class FrameHandlers:
    def __init__(self, config: Config, bus: Bus):
        self.config = config
        self.bus = bus
        self.timeout = config.common.request_timeout
        self.catch_up = CatchUp(config, bus)
        self.table: dict[str, FrameHandler] = {
            "send_message": self.send_message, "ack": self.ack, "read": self.read,
            "ping": self.ping, "sync": self.sync,
            "start_typing": self.typing, "stop_typing": self.typing,
        }

    async def send_message(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any]:
        request = {"sender_id": conn.user_id, "sender_device_id": conn.device_id,
                   "client_msg_id": frame["id"], "chat_id": frame["chat_id"],
                   "content_type": frame.get("content_type", "text"), "content": frame["content"]}
        for optional in ("content_version", "metadata"):
            if optional in frame:
                request[optional] = frame[optional]
        ack = await rpc.call(self.bus, "im.router.send", request, timeout=self.timeout)
        conn.deliver(ack["chat_id"], ack["seq"], ALREADY_HELD)
        return {"type": "message_ack", "id": frame["id"], **ack}

    async def ack(self, conn: Connection, frame: dict[str, Any]) -> None:
        await rpc.call(self.bus, "im.dlv.ack", {"user_id": conn.user_id, "device_id": conn.device_id,
                                                "chat_id": frame["chat_id"], "seq": frame["seq"]},
                       timeout=self.timeout)

    async def read(self, conn: Connection, frame: dict[str, Any]) -> None:
        await rpc.call(self.bus, "im.router.read", {"user_id": conn.user_id, "chat_id": frame["chat_id"],
                                                    "seq": frame["seq"]}, timeout=self.timeout)

    async def ping(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any]:
        return {"type": "pong", **({"id": frame["id"]} if "id" in frame else {})}

    async def typing(self, conn: Connection, frame: dict[str, Any]) -> None:
        """Typing is ephemeral: relayed, never stored; a start not refreshed within
        TYPING_EXPIRY_S ends by itself, so a client that vanishes mid-word stops "typing"."""
        chat_id, typing = frame["chat_id"], frame["type"] == "start_typing"
        previous = conn.typing.pop(chat_id, None) if conn.typing else None
        if previous is not None:
            previous.cancel()
        await self._relay_typing(conn, chat_id, typing)
        if typing and conn.nursery is not None:
            if conn.typing is None:
                conn.typing = {}
            scope = conn.typing[chat_id] = trio.CancelScope()
            conn.nursery.start_soon(self._expire_typing, conn, chat_id, scope)

    async def _expire_typing(self, conn: Connection, chat_id: str, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(TYPING_EXPIRY_S)
            if conn.typing:
                conn.typing.pop(chat_id, None)
            with contextlib.suppress(NatterjackError):
                await self._relay_typing(conn, chat_id, False)

    async def _relay_typing(self, conn: Connection, chat_id: str, typing: bool) -> None:
        await rpc.call(self.bus, "im.router.typing", {"user_id": conn.user_id, "device_id": conn.device_id,
                                                      "chat_id": chat_id, "typing": typing},
                       timeout=self.timeout)

    async def sync(self, conn: Connection, frame: dict[str, Any]) -> None:
        await self.catch_up.catch_up_chat(conn, frame["chat_id"], frame["after_seq"], None)
