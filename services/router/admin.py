"""Bus handlers for chat changes: members, roles, ownership, name (rules in membership.py).

Each change is written to MySQL, the member cache is dropped, and a ``chat_updated`` event
with its own seq is stored and fanned out to the members before and after the change (so
a removed user learns of it, and from then on gets nothing more). A change whose event
cannot be stored is rolled back.
"""

from __future__ import annotations

from typing import Any

import trio

from libs import ids, log

from . import domain, membership
from .errors import UnknownChat
from .handlers import Handlers

logger = log.get("router.admin")


class ChatAdmin:
    def __init__(self, core: Handlers):
        self.core = core
        self.storage = core.storage

    async def add_member(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{actor_id, chat_id, user_id, role?} -> chat object plus ``added`` (False for a role
        change or a repeat), so the edge can answer 201 or 200."""
        actor, chat_id, user = _ids(payload)
        role = payload.get("role")
        chat, members = await self._load(chat_id)
        change = membership.plan_add(chat["type"], members, actor, user, role,
                                     self.core.config.max_group_members)
        if change is not None:
            if change.kind == "member_added":
                await self.core._require_users([user])
            await self._commit(chat, members, actor, change)
        view = await self.core.get_chat({"chat_id": chat_id, "user_id": actor})
        return {**view, "added": change is not None and change.kind == "member_added"}

    async def remove_member(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{actor_id, chat_id, user_id} -> {} (actor == user: leave)."""
        actor, chat_id, user = _ids(payload)
        chat, members = await self._load(chat_id)
        await self._commit(chat, members, actor, membership.plan_remove(chat["type"], members, actor, user))
        return {}

    async def transfer_owner(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{actor_id, chat_id, user_id} -> chat object; the old owner becomes an admin."""
        actor, chat_id, user = _ids(payload)
        chat, members = await self._load(chat_id)
        await self._commit(chat, members, actor, membership.plan_transfer(chat["type"], members, actor, user))
        return await self.core.get_chat({"chat_id": chat_id, "user_id": actor})

    async def update_chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{actor_id, chat_id, name} -> chat object."""
        actor, chat_id = domain.require_id(payload, "actor_id"), domain.require_id(payload, "chat_id")
        chat, members = await self._load(chat_id)
        change = membership.plan_rename(chat["type"], members, actor, payload.get("name"), chat["name"])
        if change is not None:
            await self._commit(chat, members, actor, change)
        return await self.core.get_chat({"chat_id": chat_id, "user_id": actor})

    async def _load(self, chat_id: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        chat = await self.storage.chat(chat_id)
        if chat is None:
            raise UnknownChat("unknown chat")
        return chat, await self.storage.members(chat_id)

    async def _commit(self, chat: dict[str, Any], members: list[tuple[str, str]], actor: str,
                      change: membership.Change) -> None:
        chat_id, now = chat["chat_id"], ids.now_ms()
        await self._write(chat, change, now)
        try:
            event = await self.core.publish_new(
                chat_id, lambda seq, ts: membership.chat_updated_event(chat_id, seq, ts, actor, change))
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._undo(chat, members, change, now)
            raise
        self.core.background.start_soon(self._forget_again, chat_id)
        after = membership.apply(members, change)
        audience = list(dict.fromkeys([u for u, _ in members] + [u for u, _ in after]))
        await self.core.fanout.submit(self.core.fanout.event, event, audience)

    async def _write(self, chat: dict[str, Any], change: membership.Change, now: int) -> None:
        if change.kind == "renamed":
            await self.storage.rename(chat["chat_id"], change.details["name"])
        else:
            await self.storage.change_members(chat["chat_id"], list(change.rows), now)

    async def _undo(self, chat: dict[str, Any], members: list[tuple[str, str]],
                    change: membership.Change, now: int) -> None:
        before = dict(members)
        try:
            if change.kind == "renamed":
                await self.storage.rename(chat["chat_id"], chat["name"])
            else:
                await self.storage.change_members(
                    chat["chat_id"], [(user, before.get(user)) for user, _ in change.rows], now)
        except Exception:
            logger.exception("router.change_not_undone", chat_id=chat["chat_id"], kind=change.kind)

    async def _forget_again(self, chat_id: str) -> None:
        # A lookup that read MySQL just before the change may have refilled the cache after
        # the first drop; a second drop a moment later clears that stale copy.
        await trio.sleep(0.5)
        await self.storage.forget_members(chat_id)


def _ids(payload: dict[str, Any]) -> tuple[str, str, str]:
    return (domain.require_id(payload, "actor_id"), domain.require_id(payload, "chat_id"),
            domain.require_id(payload, "user_id"))
