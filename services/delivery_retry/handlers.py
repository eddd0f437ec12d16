"""Bus handlers of delivery-retry: im.dlv.ack, im.dlv.sync, im.dlv.cursor, im.dlv.status.

Payloads are checked here (:mod:`.domain` parsers); reads go to :class:`Storage`, acks go
through the batching :class:`AckWriter`. Errors are raised as :mod:`.errors` classes and
become ``{"error": ...}`` replies in :func:`libs.rpc.serve_rpc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from libs.errors import NatterjackError

from . import domain
from .ack_writer import AckWriter
from .domain import Ack, AckOutcome, DeviceQuery
from .errors import NotMember, UnknownChat
from .status_reader import PROJECTION_WAIT_ROUNDS, PROJECTION_WAIT_S, StatusReader
from .storage import DeviceChat, Storage

QUEUE = "delivery-retry"
ACK = "im.dlv.ack"
SYNC = "im.dlv.sync"
CURSOR = "im.dlv.cursor"
STATUS = "im.dlv.status"



class Handlers:
    def __init__(self, storage: Storage, acks: AckWriter, statuses: StatusReader):
        self.storage = storage
        self.acks = acks
        self.statuses = statuses

    def routes(self) -> dict[str, Any]:
        return {ACK: self.ack, SYNC: self.sync, CURSOR: self.cursor, STATUS: self.status}

    async def status(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{user_id, message_id} -> {message_id, chat_id, seq, recipients: [{user_id, device_id,
        status, attempts, updated_ts}]}; only a current member of the chat may ask."""
        user_id, message_id = domain.parse_status_query(payload)
        return await self.statuses.read(user_id, message_id)

    async def ack(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{user_id, device_id, chat_id, seq} -> {acked_seq, applied}; or {acks: [...]}."""
        acks, batched = domain.parse_acks(payload)
        outcomes = await self._submit_waiting_for_projection(acks)
        if batched:
            return _batch_reply(acks, outcomes)
        outcome = outcomes[0]
        if isinstance(outcome, NatterjackError):
            raise _fresh(outcome)
        return {"acked_seq": outcome.acked_seq, "applied": int(outcome.advanced)}

    async def _submit_waiting_for_projection(self, acks: list[Any]) -> list[Any]:
        """Devices get events on the fast path before this service has consumed them, so
        an ack may name a seq, chat or member the projection does not know yet: give the
        projection a moment to catch up before refusing it."""
        outcomes = await self.acks.submit(acks)
        for _ in range(PROJECTION_WAIT_ROUNDS):
            if not any(isinstance(o, NatterjackError) and o.code in (4000, 4001, 4003)
                       for o in outcomes):
                break
            await trio.sleep(PROJECTION_WAIT_S)
            outcomes = await self.acks.submit(acks)
        return outcomes

    async def sync(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{user_id, device_id[, chat_id[, after_seq]][, all]} -> {chats: [{chat_id, after_seq,
        last_seq, action}]}: every chat the device is behind in ("resend"; with ``all``, the
        caught-up ones too, as "live"), or the one chat asked for."""
        query = domain.parse_device_query(payload)
        if query.chat_id is None:
            rows = await self.storage.behind_chats(query.user_id, query.device_id,
                                                   caught_up_too=payload.get("all") is True)
            return {"chats": [{**row, "action": "resend" if row["last_seq"] > row["after_seq"] else "live"}
                              for row in rows]}
        view = await self._member_view(query)
        after_seq = query.after_seq if query.after_seq is not None else view.acked_seq or 0
        return {"chats": [{"chat_id": query.chat_id, "after_seq": after_seq,
                           "last_seq": view.last_seq, "action": "resend"}]}

    async def cursor(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{user_id, device_id, chat_id} -> {acked_seq (0: never acked), last_seq}."""
        query = domain.parse_device_query(payload, chat_required=True)
        view = await self._member_view(query)
        return {"acked_seq": view.acked_seq or 0, "last_seq": view.last_seq}

    async def _member_view(self, query: DeviceQuery) -> DeviceChat:
        assert query.chat_id is not None
        view = await self.storage.device_chat(query.user_id, query.device_id, query.chat_id)
        if view.last_seq is None:
            raise UnknownChat(f"unknown chat {query.chat_id}")
        if not view.is_member:
            raise NotMember(f"{query.user_id} is not a member of {query.chat_id}")
        return view


def _batch_reply(acks: Sequence[Ack], outcomes: Sequence[AckOutcome | NatterjackError]
                 ) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for ack, outcome in zip(acks, outcomes, strict=True):
        if isinstance(outcome, NatterjackError):
            results.append({"chat_id": ack.chat_id, "device_id": ack.device_id,
                            "error": outcome.to_body()})
        else:
            results.append({"chat_id": ack.chat_id, "device_id": ack.device_id,
                            "acked_seq": outcome.acked_seq})
    applied = sum(1 for o in outcomes if isinstance(o, AckOutcome) and o.advanced)
    return {"applied": applied, "results": results}


def _fresh(error: NatterjackError) -> NatterjackError:
    """A copy to raise: one batch's shared error object must not collect every caller's
    traceback."""
    return type(error)(error.message, code=error.code, details=error.details)
