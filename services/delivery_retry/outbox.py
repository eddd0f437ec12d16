"""What delivery-retry tells devices, through the gateways that hold them.

Where a device is comes from the gateways' presence registry (:mod:`libs.presence`). Frames
for users (receipts, delivery_failed) go once per gateway holding one of their devices;
while Redis is down they go to every gateway with user-only targets, as the router does.
Resends go to the one gateway holding the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from libs import presence
from libs.bus import Bus
from libs.cache import Cache, CacheUnavailable

ALL_GATEWAYS = "im.gw.all.deliver"


class Outbox:
    def __init__(self, bus: Bus, cache: Cache | None, presence_ttl_s: float):
        self.bus = bus
        self.cache = cache
        self.presence_ttl_s = presence_ttl_s

    async def online(self, user_ids: list[str]) -> dict[str, dict[str, str]]:
        """{user: {device: gateway}} of the users' live devices; raises CacheUnavailable."""
        if self.cache is None:
            raise CacheUnavailable("no cache configured")
        if not user_ids:
            return {}
        return await presence.online_devices(self.cache, user_ids, self.presence_ttl_s)

    async def frames_to_users(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Each (user, frame) to every live device of the user."""
        if not items:
            return
        try:
            online = await self.online(sorted({user for user, _ in items}))
        except CacheUnavailable:
            for user_id, frame in items:
                await self._publish(ALL_GATEWAYS, [{"user_id": user_id}], frame)
            return
        for user_id, frame in items:
            devices = online.get(user_id)
            if devices:
                for gateway, targets in presence.group_targets({user_id: devices}).items():
                    await self._publish(f"im.gw.{gateway}.deliver", targets, frame)

    async def _publish(self, subject: str, targets: list[dict[str, str]], frame: dict[str, Any]) -> None:
        await self.bus.publish(subject, orjson.dumps({"targets": targets, "frame": frame}))

    async def resend(self, gateway_id: str, user_id: str, device_id: str, chat_id: str,
                     frames: list[dict[str, Any]]) -> None:
        """A device's unacked events again, in seq order (the gateway writes them as is)."""
        body = {"targets": [{"user_id": user_id, "device_id": device_id}], "chat_id": chat_id,
                "resend": frames}
        await self.bus.publish(f"im.gw.{gateway_id}.deliver", orjson.dumps(body))
