"""Bus handlers of the router: chats, sends, reads. No SQL or Redis here (see storage)."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import trio

from libs import events, ids, log, metrics, rpc
from libs.bus import Bus, js_publish
from libs.cache import CacheUnavailable
from libs.errors import NotFound, Unavailable

from . import content_types, domain
from .config import Config
from .errors import NotMember, UnknownChat
from .storage import Storage

logger = log.get("router")


class Handlers:
    def __init__(self, config: Config, bus: Bus, storage: Storage, background: trio.Nursery):
        self.config = config
        self.bus = bus
        self.storage = storage
        self.background = background

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
        await self._publish({"event": "chat_updated", "chat_id": chat_id, "seq": 1, "ts": now,
                             "kind": "created", "actor_id": creator,
                             "details": {"type": spec.type, "name": spec.name,
                                         "members": [{"user_id": u, "role": r} for u, r in spec.members]}})
        chat = await self.storage.chat(chat_id)
        return {**await self._chat_view(chat or {}), "created": True}

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
            last_seq = await self.storage.last_seq(row["chat_id"])
            chats.append({"chat_id": row["chat_id"], "type": row["type"], "name": row["name"],
                          "last_seq": last_seq, "unread": max(0, last_seq - row["last_read_seq"])})
        return {"chats": chats}

    async def _chat_view(self, chat: dict[str, Any]) -> dict[str, Any]:
        members = await self.storage.members(chat["chat_id"])
        last_seq = await self.storage.last_seq(chat["chat_id"])
        return domain.chat_object(chat, members, last_seq)

    async def _require_users(self, user_ids: list[str]) -> None:
        answer = await rpc.call(self.bus, "im.auth.users.exist", {"user_ids": user_ids},
                                timeout=self.config.common.request_timeout)
        if answer["missing"]:
            raise NotFound("unknown user", details={"user_ids": answer["missing"]})

    # ---- messages -----------------------------------------------------------------------
    async def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        req = domain.send_request(payload, self.config.metadata_max_bytes)
        members = await self._members_checked(req.chat_id, req.sender_id)
        version = content_types.validate(req.content_type, req.content_version, req.content)
        previous = await self._claim(req)
        if previous is not None:
            return previous
        try:
            seq = await self.storage.next_seq(req.chat_id)
        except BaseException:
            await self._release(req)
            raise
        event = domain.message_event(req, seq, ids.new_id(), version, ids.now_ms())
        try:
            await self._publish(event)
        except BaseException:
            await self._release(req)
            self.background.start_soon(self._publish_void, req.chat_id, seq)
            raise
        ack = {"message_id": event["message_id"], "chat_id": req.chat_id, "seq": seq, "ts": event["ts"]}
        metrics.MESSAGES_IN.inc()
        self.background.start_soon(self._after_send, req, ack, event, members)
        return ack

    async def read(self, payload: dict[str, Any]) -> dict[str, Any]:
        chat_id, user_id = domain.require_id(payload, "chat_id"), domain.require_id(payload, "user_id")
        seq = domain.require_int(payload, "seq", minimum=1)
        await self._members_checked(chat_id, user_id)
        await self.storage.mark_read(chat_id, user_id, seq)
        return {}

    async def _members_checked(self, chat_id: str, user_id: str) -> list[tuple[str, str]]:
        members = await self.storage.members(chat_id)
        if not members:
            raise UnknownChat("unknown chat")
        if not any(user == user_id for user, _ in members):
            raise NotMember("not a member of this chat")
        return members

    async def _claim(self, req: domain.SendRequest) -> dict[str, Any] | None:
        try:
            previous = await self.storage.claim_send(req.sender_id, req.client_msg_id,
                                                     self.config.dedup_ttl_s)
        except CacheUnavailable:
            logger.warning("router.dedup_unavailable", client_msg_id=req.client_msg_id)
            return None
        if previous and previous.get("pending"):
            raise Unavailable("a send with this id is in progress; retry with the same id")
        return previous

    async def _release(self, req: domain.SendRequest) -> None:
        with trio.CancelScope(shield=True), contextlib.suppress(CacheUnavailable):
            await self.storage.release_send(req.sender_id, req.client_msg_id)

    async def _publish(self, event: dict[str, Any]) -> None:
        await js_publish(self.bus, events.stream_subject(event["chat_id"]), orjson.dumps(event),
                         msg_id=events.msg_id(event["chat_id"], event["seq"]),
                         deadline=self.config.publish_deadline_s)

    async def _publish_void(self, chat_id: str, seq: int) -> None:
        """A number was handed out but its send failed: store a void so seq stays dense.

        Same de-duplication id as the message: if the message did land after all, the
        stream drops the void.
        """
        void = {"event": "void", "chat_id": chat_id, "seq": seq, "ts": ids.now_ms()}
        for _ in range(30):
            try:
                await self._publish(void)
                return
            except Unavailable:
                await trio.sleep(2)
        logger.error("router.void_not_stored", chat_id=chat_id, seq=seq)

    async def _after_send(self, req: domain.SendRequest, ack: dict[str, Any], event: dict[str, Any],
                          members: list[tuple[str, str]]) -> None:
        try:
            await self.storage.record_send(req.sender_id, req.client_msg_id, ack, self.config.dedup_ttl_s)
        except CacheUnavailable:
            logger.warning("router.dedup_not_recorded", client_msg_id=req.client_msg_id)
        await self.fan_out(event, [user for user, _ in members])

    async def fan_out(self, event: dict[str, Any], user_ids: list[str]) -> None:
        """Fast path: one publish per gateway holding a recipient device (not per member)."""
        try:
            presence = await self.storage.presence(user_ids, self.config.common.presence_ttl_s)
        except CacheUnavailable:
            body = orjson.dumps({"targets": [{"user_id": u} for u in user_ids], "event": event})
            await self.bus.publish("im.gw.all.deliver", body)
            return
        for gateway, targets in domain.group_targets(presence).items():
            await self.bus.publish(f"im.gw.{gateway}.deliver",
                                   orjson.dumps({"targets": targets, "event": event}))
