"""The status API's gathering: one message's recipient devices and what is known of each.

Devices come from auth (every device with a live session), read positions from router;
when either is unreachable the answer is built from what this service knows alone
(devices it has cursors, failures or presence for; no "read").
"""

from __future__ import annotations

from typing import Any

import trio

from libs import log, rpc
from libs.bus import Bus
from libs.cache import CacheUnavailable
from libs.errors import NatterjackError

from . import status
from .errors import MessageNotFound, NotMember
from .outbox import Outbox
from .retries import EventRef
from .schedule_storage import DeliveryFacts, ScheduleStorage

logger = log.get("delivery_retry.status")
# Devices get events (and senders their message_ack) before this service has projected
# them: a request naming one waits this long for the projection before it is refused.
PROJECTION_WAIT_S = 0.05
PROJECTION_WAIT_ROUNDS = 20  # up to 1 s


class StatusReader:
    def __init__(self, store: ScheduleStorage, outbox: Outbox, bus: Bus, timeout: float):
        self.store = store
        self.outbox = outbox
        self.bus = bus
        self.timeout = timeout

    async def read(self, user_id: str, message_id: str) -> dict[str, Any]:
        chat_id, event = await self._find(message_id)
        if not await self.store.is_member(chat_id, user_id):
            raise NotMember(f"{user_id} is not a member of {chat_id}")
        users = await self.store.recipients(chat_id, event.seq)
        facts = await self.store.delivery_facts(chat_id, event.seq)
        online = await self._online(users)
        devices = await self._devices(users, facts, online)
        reads = await self._reads(chat_id)
        entries = [status.device_status(event.seq, event.ts, status.DeviceFacts(
            u, d, *facts.cursors.get((u, d), (0, 0)), *facts.failures.get((u, d), (0, 0)),
            facts.retries.get((u, d), 0), d in online.get(u, {}), reads.get(u, 0)))
            for u, d in status.recipient_devices(devices, event.sender_id, event.sender_device_id)]
        return {"message_id": message_id, "chat_id": chat_id, "seq": event.seq, "recipients": entries}

    async def _find(self, message_id: str) -> tuple[str, EventRef]:
        for _ in range(PROJECTION_WAIT_ROUNDS):
            found = await self.store.message(message_id)
            if found is not None:
                return found
            await trio.sleep(PROJECTION_WAIT_S)
        raise MessageNotFound("no such message", details={"message_id": message_id})

    async def _online(self, users: list[str]) -> dict[str, dict[str, str]]:
        try:
            return await self.outbox.online(users)
        except CacheUnavailable:
            return {}

    async def _devices(self, users: list[str], facts: DeliveryFacts,
                       online: dict[str, dict[str, str]]) -> dict[str, set[str]]:
        """Every device with a live session (auth); without auth, the devices known here."""
        known: dict[str, set[str]] = {u: set(online.get(u, ())) for u in users}
        try:
            reply = await rpc.call(self.bus, "im.auth.devices", {"user_ids": users}, timeout=self.timeout)
            sources: list[Any] = [[(u, d) for u, ds in reply["devices"].items() for d in ds]]
        except NatterjackError as exc:
            logger.warning("dlv.status_devices_unavailable", error=exc.message)
            sources = [facts.cursors, facts.failures, facts.retries]
        for source in sources:
            for u, d in source:
                if u in known:
                    known[u].add(d)
        return known

    async def _reads(self, chat_id: str) -> dict[str, int]:
        try:
            reply = await rpc.call(self.bus, "im.router.reads", {"chat_id": chat_id}, timeout=self.timeout)
            return {u: int(s) for u, s in reply["reads"].items()}
        except NatterjackError as exc:
            logger.warning("dlv.status_reads_unavailable", error=exc.message)
            return {}
