"""im.router.holes: void numbers that were handed out but never stored.

A router killed between taking a seq and publishing its event (or its void) leaves a number
no process knows about. history, which sees every stored event, reports numbers still
missing long after a higher one was stored (NJ_HISTORY_HOLE_AFTER_S); the router owns
numbering and voids, so it stores the void. The void carries the lost event's
``Nats-Msg-Id``: an event that did land within the stream's duplicate window keeps its
seq and the void is dropped. Numbers above what this chat's counter has handed out are
refused, so no request can void the future.
"""

from __future__ import annotations

from typing import Any

import trio

from libs import log

from . import domain
from .errors import BadRequest, HoleNotAllocated
from .handlers import Handlers

logger = log.get("router.holes")
MAX_SEQS = 1000  # per request; history asks again for the rest
REASON = "abandoned"


def hole_seqs(payload: dict[str, Any]) -> list[int]:
    """The distinct seqs of the request, ascending (1..MAX_SEQS of them, each >= 1)."""
    value = payload.get("seqs")
    if (not isinstance(value, list) or not 0 < len(value) <= MAX_SEQS
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in value)):
        raise BadRequest(f"seqs must be 1 to {MAX_SEQS} integers >= 1", details={"path": "$.seqs"})
    return sorted(set(value))


class HoleVoider:
    def __init__(self, core: Handlers):
        self.core = core

    async def void(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{chat_id, seqs} -> {voided: n}: a void for each seq is being stored (in the
        background, retried like any void); 4009 when a seq was never handed out."""
        chat_id = domain.require_id(payload, "chat_id")
        seqs = hole_seqs(payload)
        last = await self.core.storage.last_seq(chat_id)
        if seqs[-1] > last:
            raise HoleNotAllocated("seq not handed out yet", details={"chat_id": chat_id, "last_seq": last})
        logger.warning("router.holes_voided", chat_id=chat_id, seqs=seqs[:20], count=len(seqs))
        self.core.background.start_soon(self._store_voids, chat_id, seqs)
        return {"voided": len(seqs)}

    async def _store_voids(self, chat_id: str, seqs: list[int]) -> None:
        in_flight = trio.Semaphore(32)

        async def one(seq: int) -> None:
            try:
                await self.core._publish_void(chat_id, seq, REASON)
            finally:
                in_flight.release()
        async with trio.open_nursery() as nursery:
            for seq in seqs:
                await in_flight.acquire()
                nursery.start_soon(one, seq)
