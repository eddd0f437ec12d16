"""Bus handlers of the router: chats, sends, edits, reads. No SQL or Redis here (see storage).

Membership changes are in ``admin.py``, typing and presence in ``signals.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import trio

from libs import events, ids, log, metrics, rpc
from libs.bus import Bus, PubAck, js_publish
from libs.errors import FORBIDDEN, NOT_FOUND, UNKNOWN_CHAT, NatterjackError, NotFound, Unavailable

from . import domain
from .claims import Ask
from .config import Config
from .content_types import ContentTypes
from .dedup import Dedup
from .errors import NotMember, TargetMissing, UnknownChat
from .fanout import Fanout
from .storage import Storage
from .takeover import Takeover

logger = log.get("router")


class Handlers:
    def __init__(self, config: Config, bus: Bus, storage: Storage, types: ContentTypes,
                 fanout: Fanout, background: trio.Nursery, dedup: Dedup):
        self.config = config
        self.dedup = dedup
        self.bus = bus
        self.storage = storage
        self.types = types
        self.fanout = fanout
        self.background = background
        self.takeover = Takeover(bus, dedup.claims, self._publish,
                                 duplicate_window_s=config.stream.duplicate_window_s,
                                 request_timeout=config.common.request_timeout)
        storage.seq.on_gap = self._schedule_gap

    # ---- chats --------------------------------------------------------------------------
    async def create_chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        spec = domain.chat_spec(payload, self.config.max_group_members)
        creator = spec.members[0][0]
        if spec.pair_key and (existing := await self.storage.find_direct(spec.pair_key)):
            return {**await self._chat_view(existing), "created": False}
        await self._require_users([user for user, _ in spec.members])
        chat_id, now = ids.new_id(), ids.now_ms()
        if not await self.storage.create_chat(chat_id, spec, creator, now):
            existing = await self.storage.find_direct(spec.pair_key or "")
            return {**await self._chat_view(existing or {}), "created": False}
        created = {"event": "chat_updated", "chat_id": chat_id, "seq": 1, "ts": now,
                   "kind": "created", "actor_id": creator,
                   "details": {"type": spec.type, "name": spec.name,
                               "members": [{"user_id": u, "role": r} for u, r in spec.members]}}
        await self._publish(created)
        chat = await self.storage.chat(chat_id)
        view = await self._chat_view(chat or {})
        await self.fanout.submit(self.fanout.event, created, [m["user_id"] for m in view["members"]])
        return {**view, "created": True}

    async def get_chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        chat_id, user_id = domain.require_id(payload, "chat_id"), domain.require_id(payload, "user_id")
        chat = await self.storage.chat(chat_id)
        if chat is None:
            raise UnknownChat("unknown chat")
        view = await self._chat_view(chat)
        if not any(m["user_id"] == user_id for m in view["members"]):
            raise NotMember("not a member of this chat")
        return view

    async def list_chats(self, payload: dict[str, Any]) -> dict[str, Any]:
        user_id = domain.require_id(payload, "user_id")
        chats = []
        for row in await self.storage.chats_of(user_id):
            last_seq = await self.storage.last_seq(row["chat_id"], int(row["confirmed_seq"]))
            chats.append({"chat_id": row["chat_id"], "type": row["type"], "name": row["name"],
                          "last_seq": last_seq, "unread": max(0, last_seq - row["last_read_seq"])})
        return {"chats": chats}

    async def _chat_view(self, chat: dict[str, Any]) -> dict[str, Any]:
        members = await self.storage.members(chat["chat_id"])
        last_seq = await self.storage.last_seq(chat["chat_id"], int(chat.get("confirmed_seq") or 0))
        return domain.chat_object(chat, members, last_seq)

    async def _require_users(self, user_ids: list[str]) -> None:
        answer = await rpc.call(self.bus, "im.auth.users.exist", {"user_ids": user_ids},
                                timeout=self.config.common.request_timeout)
        if answer["missing"]:
            raise NotFound("unknown user", details={"user_ids": answer["missing"]})

    # ---- messages -----------------------------------------------------------------------
    async def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        req = domain.send_request(payload, self.config.metadata_max_bytes)
        ask = Ask(req.sender_id, req.client_msg_id, req.chat_id, ids.new_id())
        # One Redis round trip for the member list and the id's claim; a send refused
        # below frees the claim it made, so refusals behave as if it was never claimed.
        members, cached = await self.storage.members_and_claim(
            req.chat_id, req.sender_id, req.client_msg_id, self.dedup.pending_s)
        try:
            _check_member(members, req.sender_id)
            version = await self.types.validate(req.content_type, req.content_version, req.content)
            previous = self.dedup.answer_cached(cached)
        except BaseException:
            if cached.ours:
                await self.dedup.release_cached(ask)
            raise
        if previous is not None:
            return previous
        ask = await self._numbered(ask)
        event = domain.message_event(req, ask.seq, ask.token, version, ask.ts)
        async with self._voided_on_failure(ask):
            if (previous := await self._claim(req, version, ask)) is not None:
                self._publish_void_soon(req.chat_id, ask.seq)  # this send's number is unused
                return previous
            await self._publish(event)
        ack = {"message_id": event["message_id"], "chat_id": req.chat_id, "seq": ask.seq, "ts": ask.ts}
        metrics.message_in()
        self.dedup.record_durable(ask, ack)
        await self.fanout.submit(self._after_send, ask, ack, event, members)
        return ack

    async def _numbered(self, ask: Ask) -> Ask:
        """The send's seq (and ts) come before its durable claim, which records them."""
        try:
            seq = await self.storage.next_seq(ask.chat_id)
        except BaseException:
            await self.dedup.release_cached(ask)
            raise
        return replace(ask, seq=seq, ts=ids.now_ms())

    @asynccontextmanager
    async def _voided_on_failure(self, ask: Ask) -> AsyncIterator[None]:
        """A send that fails after taking its number frees its id and voids the number."""
        try:
            yield
        except BaseException:
            await self.dedup.release(ask)
            self._publish_void_soon(ask.chat_id, ask.seq)
            raise

    async def _claim(self, req: domain.SendRequest, version: int, ask: Ask) -> dict[str, Any] | None:
        """None: the send is this caller's to store; else the original ack to answer."""
        verdict, found = await self.dedup.claim(ask)
        if verdict == domain.STALE and found is not None:
            found = await self.takeover.settle(req, version, ask, found)
            if found is not None:
                await self.dedup.remember(ask, found)
        return found

    async def update_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Edit, recall or delete a message: a stored ``message_updated`` event of its own."""
        req = domain.update_request(payload)
        members = await self._members_checked(req.chat_id, req.actor_id)
        target = await self._target(req)
        domain.check_update(req, dict(members)[req.actor_id], target, ids.now_ms(),
                            self.config.edit_window_s, self.config.recall_window_s)
        if req.kind == "edit":
            await self.types.validate(str(target.get("content_type")), target.get("content_version"),
                                      req.content)
        event = await self.publish_new(req.chat_id, lambda seq, ts: domain.message_updated_event(
            req, seq, ts, target))
        await self.fanout.submit(self.fanout.event, event, [user for user, _ in members])
        return {"chat_id": req.chat_id, "seq": event["seq"], "ts": event["ts"]}

    async def _target(self, req: domain.UpdateRequest) -> dict[str, Any]:
        """The target event from history; a just-sent message may take a moment to land there."""
        ask = {"chat_id": req.chat_id, "user_id": req.actor_id, "seq": req.target_seq}
        for attempt in range(6):
            try:
                return await rpc.call(self.bus, "im.history.get", ask,
                                      timeout=self.config.common.request_timeout)
            except NatterjackError as exc:
                # The actor's membership is checked here already: history answering "unknown
                # chat" or "not a member" only means its projection has not caught up yet.
                if exc.code not in (NOT_FOUND, UNKNOWN_CHAT, FORBIDDEN):
                    raise
                if attempt == 5 or req.target_seq > await self.storage.last_seq(req.chat_id):
                    raise TargetMissing("no message at this seq",
                                        details={"chat_id": req.chat_id, "seq": req.target_seq}) from None
                await trio.sleep(0.2)
        raise AssertionError("unreachable")

    async def read(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Advance the user's read position; other members' online devices get a receipt."""
        chat_id, user_id = domain.require_id(payload, "chat_id"), domain.require_id(payload, "user_id")
        seq = domain.require_int(payload, "seq", minimum=1)
        members = await self._members_checked(chat_id, user_id)
        if await self.storage.mark_read(chat_id, user_id, seq):
            others = [user for user, _ in members if user != user_id]
            await self.fanout.submit(self.fanout.frame, domain.receipt_frame(chat_id, seq, user_id), others)
        return {}

    async def reads(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{chat_id} -> {reads: {user_id: last_read_seq}} of the chat's members (delivery-retry's
        status API asks; it answers only members, so this trusts its caller)."""
        chat_id = domain.require_id(payload, "chat_id")
        return {"reads": await self.storage.read_positions(chat_id)}

    async def publish_new(self, chat_id: str, build: Any) -> dict[str, Any]:
        """Allocate the next seq, store ``build(seq, ts)`` in the stream; a failure leaves a void."""
        seq = await self.storage.next_seq(chat_id)
        event = build(seq, ids.now_ms())
        try:
            await self._publish(event)
        except BaseException:
            self._publish_void_soon(chat_id, seq)
            raise
        return event

    async def _members_checked(self, chat_id: str, user_id: str) -> list[tuple[str, str]]:
        members = await self.storage.members(chat_id)
        _check_member(members, user_id)
        return members

    async def _publish(self, event: dict[str, Any]) -> PubAck:
        ack = await js_publish(self.bus, events.stream_subject(event["chat_id"]), orjson.dumps(event),
                               msg_id=events.msg_id(event["chat_id"], event["seq"]),
                               deadline=self.config.publish_deadline_s)
        self.storage.seq.confirm(event["chat_id"], event["seq"])
        return ack

    def _publish_void_soon(self, chat_id: str, seq: int) -> None:
        self.background.start_soon(self._publish_void, chat_id, seq)

    async def _publish_void(self, chat_id: str, seq: int, reason: str = "send_failed") -> None:
        """A number was handed out but its send failed: store a void so seq stays dense.

        Same de-duplication id as the message: if the message did land after all, the
        stream drops the void.
        """
        void = {"event": "void", "chat_id": chat_id, "seq": seq, "ts": ids.now_ms(), "reason": reason}
        for _ in range(30):
            try:
                await self._publish(void)
                return
            except Unavailable:
                await trio.sleep(2)
        logger.error("router.void_not_stored", chat_id=chat_id, seq=seq)

    def _schedule_gap(self, chat_id: str, first: int, last: int) -> None:
        self.background.start_soon(self._fill_gap, chat_id, first, last)

    async def _fill_gap(self, chat_id: str, first: int, last: int) -> None:
        """Numbers skipped after a counter loss become voids, once in-flight sends had time
        to land (a number that did land keeps its event: the void is de-duplicated)."""
        logger.warning("router.seq_gap", chat_id=chat_id, first=first, last=last,
                       grace_s=self.config.void_grace_s)
        await trio.sleep(self.config.void_grace_s)
        in_flight = trio.Semaphore(32)

        async def one(seq: int) -> None:
            try:
                await self._publish_void(chat_id, seq, "counter_resync")
            finally:
                in_flight.release()
        async with trio.open_nursery() as nursery:
            for seq in range(first, last + 1):
                await in_flight.acquire()
                nursery.start_soon(one, seq)

    async def _after_send(self, ask: Ask, ack: dict[str, Any], event: dict[str, Any],
                          members: list[tuple[str, str]]) -> None:
        # The ack's Redis record rides the presence lookup's round trip.
        if not await self.fanout.event(event, [user for user, _ in members],
                                       also=self.dedup.remember_into(ask, ack)):
            logger.warning("router.dedup_not_cached", client_msg_id=ask.client_msg_id)


def _check_member(members: list[tuple[str, str]], user_id: str) -> None:
    if not members:
        raise UnknownChat("unknown chat")
    if not any(user == user_id for user, _ in members):
        raise NotMember("not a member of this chat")
