"""Catch-up: what a socket gets that it did not see live (no SQL or Redis).

On connect, everything above the device's cursors, per chat in seq order, then live
traffic, with no fetch-then-subscribe race (live events are held while a chat catches
up). A few looks after connect find events stored just before the device came online; a
gap in a chat's live order is waited on briefly, then fetched from history.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio

from libs import events, log, rpc
from libs.bus import Bus
from libs.errors import FORBIDDEN, UNAVAILABLE, UNKNOWN_CHAT, NatterjackError

from .config import Config
from .connection import Connection

logger = log.get("gateway.catch_up")
CATCH_UP_CHATS_AT_ONCE = 8
CATCH_UP_PAGE = 100  # events per history read while catching up (seed 003: batches of 100)
GAP_SETTLE_S = 0.05  # most out-of-order events arrive within this
GAP_RETRY_S = 0.1
RECHECK_AFTER_S = (0.5, 1.5, 3.0)  # delays between the looks after connecting


class CatchUp:
    def __init__(self, config: Config, bus: Bus):
        self.config = config
        self.bus = bus
        self.timeout = config.common.request_timeout

    async def on_connect(self, conn: Connection) -> None:
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
                conn.order(chat["chat_id"]).synced = True  # nothing to catch up: live already
        for chat in behind:
            conn.order(chat["chat_id"]).catching_up = True
        conn.release_held_all()
        if behind:
            await self._catch_up_chats(conn, behind)
        await self._recheck(conn)

    async def _catch_up_chats(self, conn: Connection, behind: list[dict[str, Any]]) -> None:
        limiter = trio.CapacityLimiter(CATCH_UP_CHATS_AT_ONCE)

        async def one(chat: dict[str, Any]) -> None:
            async with limiter:
                await self.catch_up_chat(conn, chat["chat_id"], chat["after_seq"], chat["last_seq"])
        async with trio.open_nursery() as nursery:
            for chat in behind:
                nursery.start_soon(one, chat)

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
                known = conn.chats.get(chat["chat_id"])
                if known is None or not known.synced:  # unknown to the first plan: same treatment
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
        order.synced = True
        conn.send_frame({"type": "sync_done", "chat_id": chat_id, "last_seq": order.delivered})

    def start_gap_watch(self, conn: Connection, chat_id: str) -> None:
        if conn.nursery is None:
            conn.order(chat_id).watching = False
            return
        conn.nursery.start_soon(self.fill_gap, conn, chat_id)

    async def fill_gap(self, conn: Connection, chat_id: str) -> None:
        """Wait briefly for out-of-order events, then fetch what is missing from history;
        past NJ_GATEWAY_GAP_WAIT_S without the order moving, skip ahead (the device gets the
        rest with its next sync).
        The wait outlasts a void's worst delay (the router's publish deadline plus its void
        grace) and a lagging history, so skipping ahead, which breaks order, stays for
        numbers nobody will ever store."""
        order = conn.order(chat_id)
        waiting_after, give_up_at = -1, 0.0
        try:
            await trio.sleep(GAP_SETTLE_S)
            while order.held and not order.catching_up:
                for text in order.settle():
                    conn.send_text(text)
                if order.gap is not None:
                    await self._fetch_gap(conn, chat_id, *order.gap)
                if order.delivered != waiting_after:  # a new gap: the whole wait for it (under
                    # load one gap follows another and the watcher runs on for minutes)
                    waiting_after = order.delivered
                    give_up_at = trio.current_time() + self.config.gap_wait_s
                if order.held and trio.current_time() >= give_up_at:
                    logger.warning("gateway.gap_skipped", chat_id=chat_id, after=order.delivered)
                    for text in order.skip_gap():
                        conn.send_text(text)
                elif order.held:
                    await trio.sleep(GAP_RETRY_S)
        finally:
            order.watching = False

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
        """History pages above the cursor, written in seq order. A page can have a hole (history
        stores the events of a chat in the order they reach it, not always in seq order): what
        is above it waits and the page is read again from the hole, as long as the wait lasts;
        then the gap watcher takes over what is still held."""
        order = conn.order(chat_id)
        order.start_at(after)  # the device holds everything up to its cursor
        told_retained = False
        unavailable: NatterjackError | None = None
        backoff = 0.05
        with trio.move_on_after(self.config.catch_up_wait_s):
            while True:
                try:
                    page = await rpc.call(self.bus, "im.history.page",
                                          {"chat_id": chat_id, "user_id": conn.user_id,
                                           "after_seq": max(after, order.delivered), "limit": CATCH_UP_PAGE},
                                          timeout=self.timeout)
                    unavailable = None
                except NatterjackError as exc:
                    if exc.code == UNAVAILABLE:  # history restarting or its MySQL away: wait it out
                        unavailable, backoff = exc, min(2 * backoff, 1.0)
                        await trio.sleep(backoff)
                        continue
                    # A plan from delivery-retry names chats the user is in; history saying
                    # otherwise only means it has not stored the chat's first events yet.
                    if last_seq is None or exc.code not in (UNKNOWN_CHAT, FORBIDDEN):
                        raise
                    await trio.sleep(0.02)
                    continue
                if not told_retained:
                    told_retained = _tell_retained(conn, chat_id, order.delivered, page)
                    if told_retained:  # nothing below what retention kept will ever come
                        order.start_at(page["retained_from_seq"] - 1)
                before = order.delivered
                for item in page["events"]:
                    text = orjson.dumps(events.page_item_to_frame(item)).decode()
                    for ready in order.from_history(item["seq"], text):
                        conn.send_text(ready)
                if page["has_more"] and order.delivered > before:
                    continue
                if (last_seq is None and not page["has_more"]) or \
                        (last_seq is not None and order.delivered >= last_seq):
                    return
                hole = bool(page["events"]) and page["events"][-1]["seq"] > order.delivered
                await trio.sleep(GAP_RETRY_S if hole else 0.02)  # history has not stored it yet
        if unavailable is not None:  # still away after the whole wait: the client is told
            raise unavailable


def _tell_retained(conn: Connection, chat_id: str, after: int, page: dict[str, Any]) -> bool:
    """Retention deleted events the device never got: say so (sync_required) before the
    retained ones follow, so the client knows its copy of the chat has a hole. Returns
    whether it was said."""
    retained_from = page.get("retained_from_seq")
    if retained_from is None or retained_from <= after + 1:
        return False
    conn.send_frame({"type": "sync_required", "chat_id": chat_id, "retained_from_seq": retained_from})
    return True
