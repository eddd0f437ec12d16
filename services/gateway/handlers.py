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

from libs import events, ids, log, metrics, rpc
from libs.bus import Bus
from libs.errors import FORBIDDEN, UNKNOWN_CHAT, NatterjackError

from .config import Config
from .connection import ALREADY_HELD, Connection

logger = log.get("gateway")
TYPING_EXPIRY_S = 5.0
CATCH_UP_CHATS_AT_ONCE = 8
CATCH_UP_PAGE = 100  # events per history read while catching up (seed 003: batches of 100)
GAP_SETTLE_S = 0.05  # most out-of-order events arrive within this
GAP_RETRY_S = 0.1
GAP_GIVE_UP_S = 5.0
RECHECK_AFTER_S = (0.5, 1.5, 3.0)  # delays between the looks after connecting
FrameHandler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Hub:
    """The sockets this gateway holds, by user."""

    def __init__(self) -> None:
        self.by_user: dict[str, set[Connection]] = {}

    def add(self, conn: Connection) -> None:
        self.by_user.setdefault(conn.user_id, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
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
        for target in payload["targets"]:
            for conn in self.by_user.get(target["user_id"], ()):
                if target.get("device_id", conn.device_id) != conn.device_id:
                    continue
                own = event["event"] == "message" and event.get("sender_id") == conn.user_id \
                    and event.get("sender_device_id") == conn.device_id
                # The sending device has its message_ack instead of the event.
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
        previous = conn.typing.pop(chat_id, None)
        if previous is not None:
            previous.cancel()
        await self._relay_typing(conn, chat_id, typing)
        if typing and conn.nursery is not None:
            scope = conn.typing[chat_id] = trio.CancelScope()
            conn.nursery.start_soon(self._expire_typing, conn, chat_id, scope)

    async def _expire_typing(self, conn: Connection, chat_id: str, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(TYPING_EXPIRY_S)
            conn.typing.pop(chat_id, None)
            with contextlib.suppress(NatterjackError):
                await self._relay_typing(conn, chat_id, False)

    async def _relay_typing(self, conn: Connection, chat_id: str, typing: bool) -> None:
        await rpc.call(self.bus, "im.router.typing", {"user_id": conn.user_id, "device_id": conn.device_id,
                                                      "chat_id": chat_id, "typing": typing},
                       timeout=self.timeout)

    async def sync(self, conn: Connection, frame: dict[str, Any]) -> None:
        await self.catch_up_chat(conn, frame["chat_id"], frame["after_seq"], None)

    # ---- catch-up -----------------------------------------------------------------------
    async def catch_up(self, conn: Connection) -> None:
        """On connect: everything above the device's cursors, per chat in seq order, then live."""
        try:
            plan = await rpc.call(self.bus, "im.dlv.sync",
                                  {"user_id": conn.user_id, "device_id": conn.device_id, "all": True},
                                  timeout=self.timeout)
        except NatterjackError as exc:
            logger.warning("gateway.sync_unavailable", error=exc.message)
            plan = {"chats": []}
        behind = [chat for chat in plan["chats"] if chat["last_seq"] > chat["after_seq"]]
        for chat in plan["chats"]:
            conn.order(chat["chat_id"]).start_at(chat["after_seq"])
            if chat["last_seq"] <= chat["after_seq"]:
                conn.synced.add(chat["chat_id"])  # nothing to catch up: live already
        for chat in behind:
            conn.order(chat["chat_id"]).catching_up = True
        conn.release_held_all()
        limiter = trio.CapacityLimiter(CATCH_UP_CHATS_AT_ONCE)

        async def one(chat: dict[str, Any]) -> None:
            async with limiter:
                await self.catch_up_chat(conn, chat["chat_id"], chat["after_seq"], chat["last_seq"])
        async with trio.open_nursery() as nursery:
            for chat in behind:
                nursery.start_soon(one, chat)
        await self._recheck(conn)

    async def _recheck(self, conn: Connection) -> None:
        """Look again a few times after connecting: an event stored just before the device
        came online may have reached neither its catch-up plan (delivery-retry's view lags
        the stream) nor its socket (the fast path ran before it was registered)."""
        for delay in RECHECK_AFTER_S:
            await trio.sleep(delay)
            try:
                plan = await rpc.call(self.bus, "im.dlv.sync", {"user_id": conn.user_id,
                                                               "device_id": conn.device_id},
                                      timeout=self.timeout)
            except NatterjackError:
                continue
            for chat in plan["chats"]:
                if chat["chat_id"] not in conn.synced:  # unknown to the first plan: same treatment
                    await self.catch_up_chat(conn, chat["chat_id"], chat["after_seq"], chat["last_seq"])
                    continue
                order = conn.order(chat["chat_id"])
                if chat["last_seq"] > order.delivered and not order.catching_up:
                    await self._fetch_gap(conn, chat["chat_id"], max(order.delivered, chat["after_seq"]),
                                          chat["last_seq"] + 1)

    async def catch_up_chat(self, conn: Connection, chat_id: str, after_seq: int,
                            last_seq: int | None) -> None:
        """Send the chat's events above ``after_seq`` from history, then held live ones."""
        order = conn.order(chat_id)
        order.catching_up = True
        try:
            await self._page_through(conn, chat_id, after_seq, last_seq)
        except NatterjackError as exc:
            conn.send_frame({"type": "error", **exc.to_body()})
        finally:
            for text in order.finish_catch_up():
                conn.send_text(text)
            conn.watch(chat_id)
        conn.synced.add(chat_id)
        conn.send_frame({"type": "sync_done", "chat_id": chat_id, "last_seq": order.delivered})

    def start_gap_watch(self, conn: Connection, chat_id: str) -> None:
        if conn.nursery is None:
            conn.watching.discard(chat_id)
            return
        conn.nursery.start_soon(self.fill_gap, conn, chat_id)

    async def fill_gap(self, conn: Connection, chat_id: str) -> None:
        """Wait briefly for out-of-order events, then fetch what is missing from history;
        past GAP_GIVE_UP_S, skip ahead (the device gets the rest with its next sync)."""
        order = conn.order(chat_id)
        give_up_at = trio.current_time() + GAP_GIVE_UP_S
        try:
            await trio.sleep(GAP_SETTLE_S)
            while order.held and not order.catching_up:
                for text in order.settle():
                    conn.send_text(text)
                if order.gap is not None:
                    await self._fetch_gap(conn, chat_id, *order.gap)
                if order.held and trio.current_time() >= give_up_at:
                    logger.warning("gateway.gap_skipped", chat_id=chat_id, after=order.delivered)
                    for text in order.skip_gap():
                        conn.send_text(text)
                elif order.held:
                    await trio.sleep(GAP_RETRY_S)
        finally:
            conn.watching.discard(chat_id)

    async def _fetch_gap(self, conn: Connection, chat_id: str, after: int, before: int) -> None:
        try:
            page = await rpc.call(self.bus, "im.history.page",
                                  {"chat_id": chat_id, "user_id": conn.user_id, "after_seq": after,
                                   "before_seq": before, "limit": 200}, timeout=self.timeout)
        except NatterjackError as exc:
            logger.info("gateway.gap_fetch_failed", chat_id=chat_id, error=exc.message)
            return
        for item in page["events"]:
            conn.write_in_order(chat_id, item["seq"], orjson.dumps(events.page_item_to_frame(item)).decode())

    async def _page_through(self, conn: Connection, chat_id: str, after: int, last_seq: int | None) -> None:
        order = conn.order(chat_id)
        told_retained = False
        with trio.move_on_after(self.config.catch_up_wait_s):
            while True:
                try:
                    page = await rpc.call(self.bus, "im.history.page",
                                          {"chat_id": chat_id, "user_id": conn.user_id,
                                           "after_seq": max(after, order.delivered), "limit": CATCH_UP_PAGE},
                                          timeout=self.timeout)
                except NatterjackError as exc:
                    # A plan from delivery-retry names chats the user is in; history saying
                    # otherwise only means it has not stored the chat's first events yet.
                    if last_seq is None or exc.code not in (UNKNOWN_CHAT, FORBIDDEN):
                        raise
                    await trio.sleep(0.02)
                    continue
                if not told_retained:
                    told_retained = _tell_retained(conn, chat_id, max(after, order.delivered), page)
                for item in page["events"]:
                    if item["seq"] > order.delivered:
                        conn.send_frame(events.page_item_to_frame(item))
                        order.caught_up_to(item["seq"])
                if page["has_more"]:
                    continue
                if last_seq is None or order.delivered >= last_seq:
                    return
                await trio.sleep(0.02)  # history has not stored the newest events yet


def _tell_retained(conn: Connection, chat_id: str, after: int, page: dict[str, Any]) -> bool:
    """Retention deleted events the device never got: say so (sync_required) before the
    retained ones follow, so the client knows its copy of the chat has a hole. Returns
    whether it was said."""
    retained_from = page.get("retained_from_seq")
    if retained_from is None or retained_from <= after + 1:
        return False
    conn.send_frame({"type": "sync_required", "chat_id": chat_id, "retained_from_seq": retained_from})
    return True
