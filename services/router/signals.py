"""Ephemeral signals, never stored: typing indicators and presence changes.

Typing: a member's ``typing: true`` passes at most once per interval per (user, chat)
(excess is dropped silently); the gateway sends ``typing: false`` itself when a client
stops refreshing, so nothing expires here. Presence: gateways publish
``im.evt.presence.<user>``; the users sharing a chat with that user (chats up to a size
bound) get a ``presence_update`` on their online devices.
"""

from __future__ import annotations

from typing import Any

import trio

from libs import ids, log, rpc
from libs.bus import Bus

from . import domain
from .errors import BadRequest
from .handlers import Handlers

logger = log.get("router.signals")
PRESENCE_SUBJECT = "im.evt.presence.*"


class Signals:
    def __init__(self, core: Handlers):
        self.core = core
        self.throttle = domain.TypingThrottle(core.config.typing_min_interval_ms)

    async def typing(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{user_id, device_id, chat_id, typing} -> {} (also when throttled)."""
        user_id, chat_id = domain.require_id(payload, "user_id"), domain.require_id(payload, "chat_id")
        typing = payload.get("typing")
        if not isinstance(typing, bool):
            raise BadRequest("typing must be a boolean", details={"path": "$.typing"})
        members = await self.core._members_checked(chat_id, user_id)
        if self.throttle.allow(user_id, chat_id, typing, ids.now_ms()):
            others = [user for user, _ in members if user != user_id]
            await self.core.fanout.submit(self.core.fanout.frame,
                                          domain.typing_frame(chat_id, user_id, typing), others)
        return {}

    async def presence_changed(self, payload: dict[str, Any]) -> None:
        frame = domain.presence_frame(payload)
        if frame is None:
            logger.warning("router.presence_event_unusable")
            return
        watchers = await self.core.storage.co_members(frame["user_id"], self.core.config.presence_max_group)
        await self.core.fanout.frame(frame, watchers)

    async def serve_presence(self, bus: Bus, queue: str, *,
                             task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume presence events (core NATS, one router replica per event)."""
        sub = await bus.subscribe(PRESENCE_SUBJECT, queue=queue)
        task_status.started()
        try:
            async for msg in sub:
                try:
                    payload = rpc.decode_object(msg.data)
                except Exception:  # noqa: BLE001 - a bad event must not stop the consumer
                    logger.warning("router.presence_event_unreadable")
                    continue
                await self.core.fanout.submit(self.presence_changed, payload)
        finally:
            with trio.CancelScope(shield=True):
                await sub.close()
