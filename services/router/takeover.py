"""Settling a stale send claim: did the dead claimant's numbered send get stored?

A router killed after storing a send but before recording its ack leaves a pending claim
that names the seq, message id and ts that send was given. A resend after the pending
lifetime leases the claim and settles it here, so the message is stored exactly once:

- while the stream still remembers every publish at that number (all of them happened after
  the number was handed out, within the duplicate window): publish the claimant's event again
  under its ``Nats-Msg-Id``. Either it is stored now (it never landed) or the stream reports a
  duplicate, and the event stored first tells whether it was this send or a void that history
  asked for when the number stayed empty;
- later, or when the resend names another chat: history, the system of record, says what the
  number holds; a number it does not hold yet answers 5003 (the client retries).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
import trio

from libs import ids, log, metrics, rpc
from libs.bus import Bus, PubAck, js_stored
from libs.errors import NatterjackError, Unavailable

from . import domain
from .claims import Ask, DurableClaims
from .dedup import IN_PROGRESS

logger = log.get("router.takeover")
# Publishes at a number may come from routers whose clocks differ a little, and a void may
# still be on its way: republish only well inside the stream's duplicate window.
WINDOW_MARGIN_S = 60.0


class Takeover:
    def __init__(self, bus: Bus, claims: DurableClaims | None,
                 publish: Callable[[dict[str, Any]], Awaitable[PubAck]], *,
                 duplicate_window_s: float, request_timeout: float):
        self.bus = bus
        self.claims = claims
        self.publish = publish
        self.republish_ms = max(0.0, duplicate_window_s - WINDOW_MARGIN_S) * 1000
        self.request_timeout = request_timeout

    async def settle(self, req: domain.SendRequest, version: int, ask: Ask,
                     claimed: dict[str, Any]) -> dict[str, Any] | None:
        """``claimed``: the dead claimant's ack. Returns it when that send is stored (now or
        before); None when its number holds a void and the claim is now this send's.
        Raises Unavailable (5003, retry the same id) when that cannot be told yet."""
        assert self.claims is not None  # only durable claims go stale
        try:
            stored = await self._stored_at(req, version, claimed)
        except BaseException:
            metrics.STALE_CLAIMS.labels("unsettled").inc()
            with trio.CancelScope(shield=True), contextlib.suppress(Unavailable):
                await self.claims.unlease(ask, claimed["message_id"])
            raise
        if stored.get("message_id") == claimed["message_id"]:
            logger.warning("router.stale_claim_was_stored", client_msg_id=ask.client_msg_id,
                           chat_id=claimed["chat_id"], seq=claimed["seq"])
            self.claims.record(replace(ask, token=claimed["message_id"]), claimed)
            metrics.STALE_CLAIMS.labels("stored").inc()
            return claimed
        logger.warning("router.stale_claim_taken_over", client_msg_id=ask.client_msg_id,
                       chat_id=claimed["chat_id"], voided_seq=claimed["seq"])
        if not await self.claims.take_over(ask, claimed["message_id"]):
            raise Unavailable(IN_PROGRESS)
        metrics.STALE_CLAIMS.labels("voided").inc()
        return None

    async def _stored_at(self, req: domain.SendRequest, version: int,
                         claimed: dict[str, Any]) -> dict[str, Any]:
        """The event stored at the claimed number (the claimant's, republished, or a void)."""
        if req.chat_id != claimed["chat_id"] or ids.now_ms() - claimed["ts"] >= self.republish_ms:
            return await self._from_history(req.sender_id, claimed)
        event = domain.message_event(req, claimed["seq"], claimed["message_id"], version, claimed["ts"])
        ack = await self.publish(event)
        if not ack.duplicate:
            return event
        first: dict[str, Any] = orjson.loads(await js_stored(self.bus, ack.stream, ack.seq))
        return first

    async def _from_history(self, sender_id: str, claimed: dict[str, Any]) -> dict[str, Any]:
        ask = {"chat_id": claimed["chat_id"], "user_id": sender_id, "seq": claimed["seq"]}
        try:
            found: dict[str, Any] = await rpc.call(self.bus, "im.history.get", ask,
                                                   timeout=self.request_timeout)
        except NatterjackError as exc:  # not stored there yet (or history is away): later
            raise Unavailable(IN_PROGRESS, details={"reason": exc.code}) from None
        return found
