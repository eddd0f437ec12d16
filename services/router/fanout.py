"""The fast path to online devices: one core publish per gateway holding a recipient.

Stored events go out as ``{"targets", "event"}``, ephemeral frames (receipts, typing,
presence) as ``{"targets", "frame"}``. Targets come from the gateways' presence registry;
while Redis is down everything goes once to ``im.gw.all.deliver`` with user-only targets.

Fan-outs run in the background, bounded twice: at most ``concurrency`` at once, and at most
``backlog`` started-but-unfinished. A caller submitting beyond the backlog waits, so a burst
of huge groups slows the senders down instead of growing memory without bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio

from libs import log
from libs.bus import Bus
from libs.cache import CacheUnavailable
from libs.presence import group_targets

logger = log.get("router.fanout")
ALL_GATEWAYS = "im.gw.all.deliver"
PipelineStep = Callable[[Any], None]  # queues Redis commands on a pipeline


class Fanout:
    def __init__(self, bus: Bus, storage: Any, presence_ttl_s: float, nursery: trio.Nursery, *,
                 concurrency: int = 16, backlog: int = 1024):
        self.bus = bus
        self.storage = storage
        self.presence_ttl_s = presence_ttl_s
        self.nursery = nursery
        self.limiter = trio.CapacityLimiter(concurrency)
        self.backlog = backlog
        self.slots = trio.Semaphore(backlog)

    async def submit(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the background; waits while the backlog is full."""
        await self.slots.acquire()
        self.nursery.start_soon(self._run, fn, args)

    async def drained(self) -> None:
        """Return once every fan-out submitted so far has finished (shutdown: they record
        the sends just answered, so a resent message is recognised)."""
        for _ in range(self.backlog):
            await self.slots.acquire()
        for _ in range(self.backlog):
            self.slots.release()

    async def _run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            async with self.limiter:
                await fn(*args)
        except Exception:
            logger.exception("router.fanout_failed")
        finally:
            self.slots.release()

    async def event(self, event: dict[str, Any], user_ids: list[str], *,
                    also: PipelineStep | None = None) -> bool:
        """Deliver ``event``; ``also`` is a Redis write sent with the presence lookup (one
        round trip). False when Redis did not answer (``also`` is then not written)."""
        return await self._deliver("event", event, user_ids, also)

    async def frame(self, frame: dict[str, Any], user_ids: list[str]) -> None:
        await self._deliver("frame", frame, user_ids)

    async def _deliver(self, field: str, body: dict[str, Any], user_ids: list[str],
                       also: PipelineStep | None = None) -> bool:
        if not user_ids and also is None:
            return True
        try:
            presence = await self.storage.presence(user_ids, self.presence_ttl_s, also=also)
        except CacheUnavailable:
            if user_ids:
                payload = {"targets": [{"user_id": u} for u in user_ids], field: body}
                await self.bus.publish(ALL_GATEWAYS, orjson.dumps(payload))
            return False
        for gateway, targets in group_targets(presence).items():
            await self.bus.publish(f"im.gw.{gateway}.deliver",
                                   orjson.dumps({"targets": targets, field: body}))
        return True
