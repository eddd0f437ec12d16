"""delivery-retry end to end: stream events in, cursors and sync plans out (real NATS/MySQL)."""

from __future__ import annotations

import random
import secrets
from typing import Any

import orjson
import pytest
import trio

from libs import rpc
from libs.bus import Bus, js_publish
from libs.errors import NatterjackError
from libs.events import msg_id, stream_subject
from services.delivery_retry import app
from services.delivery_retry import config as dlv_config


def _ids() -> tuple[str, str, str, str]:
    tag = secrets.token_hex(5)
    return f"c{tag}", f"u1-{tag}", f"u2-{tag}", f"u9-{tag}"


def created(chat: str, members: list[str]) -> dict[str, Any]:
    return {"event": "chat_updated", "chat_id": chat, "seq": 1, "ts": 1, "kind": "created",
            "actor_id": members[0], "details": {"type": "group", "name": None, "members": [
                {"user_id": u, "role": "owner" if i == 0 else "member"}
                for i, u in enumerate(members)]}}


def message(chat: str, seq: int, sender: str) -> dict[str, Any]:
    return {"event": "message", "chat_id": chat, "seq": seq, "ts": seq, "message_id": f"m{seq}",
            "sender_id": sender, "sender_device_id": "d1", "client_msg_id": f"k{seq}",
            "content_type": "text", "content_version": 1, "content": f"hi {seq}",
            "metadata": None}


def removed(chat: str, seq: int, users: list[str]) -> dict[str, Any]:
    return {"event": "chat_updated", "chat_id": chat, "seq": seq, "ts": seq,
            "kind": "member_removed", "actor_id": users[0], "details": {"user_ids": users}}


async def publish(bus: Bus, event: dict[str, Any], *, msg_id_override: str | None = None) -> None:
    chat, seq = event["chat_id"], event["seq"]
    await js_publish(bus, stream_subject(chat), orjson.dumps(event),
                     msg_id=msg_id_override or msg_id(chat, seq))


async def start(nursery: trio.Nursery, common_env: Any) -> Any:
    config = dlv_config.load(common_env("delivery-retry"))
    return await nursery.start(app.main, config)


async def sync(bus: Bus, user: str, device: str = "d1") -> list[dict[str, Any]]:
    reply = await rpc.call(bus, "im.dlv.sync", {"user_id": user, "device_id": device}, timeout=5)
    return reply["chats"]


async def ack(bus: Bus, user: str, chat: str, seq: int, device: str = "d1") -> dict[str, Any]:
    payload = {"user_id": user, "device_id": device, "chat_id": chat, "seq": seq}
    return await rpc.call(bus, "im.dlv.ack", payload, timeout=5)


async def ack_error(bus: Bus, user: str, chat: str, seq: Any) -> int:
    with pytest.raises(NatterjackError) as caught:
        await ack(bus, user, chat, seq)
    return caught.value.code


async def wait_for_sync(bus: Bus, user: str, want: Any, timeout: float = 15) -> list[dict[str, Any]]:
    """Poll im.dlv.sync until ``want(chats)`` holds (the projection is asynchronous)."""
    with trio.fail_after(timeout):
        while True:
            chats = await sync(bus, user)
            if want(chats):
                return chats
            await trio.sleep(0.02)


def entry(chat: str, after: int, last: int) -> dict[str, Any]:
    return {"chat_id": chat, "after_seq": after, "last_seq": last, "action": "resend"}


async def test_cursor_lifecycle_acks_and_membership(common_env):
    chat, u1, u2, u9 = _ids()
    async with trio.open_nursery() as nursery:
        runtime = await start(nursery, common_env)
        bus = runtime.bus
        await publish(bus, created(chat, [u1, u2]))
        for seq in range(2, 6):
            await publish(bus, message(chat, seq, u1))
        assert await wait_for_sync(bus, u2, lambda c: entry(chat, 0, 5) in c) == [entry(chat, 0, 5)]

        assert await ack(bus, u2, chat, 3) == {"acked_seq": 3, "applied": 1}
        assert await sync(bus, u2) == [entry(chat, 3, 5)]
        assert await ack(bus, u2, chat, 2) == {"acked_seq": 3, "applied": 0}  # cumulative
        assert await sync(bus, u2) == [entry(chat, 3, 5)]
        assert await sync(bus, u2, device="d2") == [entry(chat, 0, 5)]  # per device
        cursor = {"user_id": u2, "device_id": "d1", "chat_id": chat}
        assert await rpc.call(bus, "im.dlv.cursor", cursor, timeout=5) == {"acked_seq": 3,
                                                                           "last_seq": 5}

        assert await ack_error(bus, u9, chat, 3) == 4003
        assert await ack_error(bus, u2, chat, 6) == 4000
        assert await ack_error(bus, u2, chat, 0) == 4000
        assert await ack_error(bus, u2, chat, "3") == 4000
        assert await ack_error(bus, u2, f"{chat}x", 1) == 4001

        assert await ack(bus, u2, chat, 5) == {"acked_seq": 5, "applied": 1}
        assert await sync(bus, u2) == []  # caught up
        await publish(bus, removed(chat, 6, [u2]))
        await wait_for_sync(bus, u1, lambda c: entry(chat, 0, 6) in c)
        assert await sync(bus, u2) == []
        assert await ack_error(bus, u2, chat, 6) == 4003
        runtime.stopping.set()


async def test_many_concurrent_acks_all_succeed_and_the_cursor_is_the_max(common_env):
    chat, u1, u2, _ = _ids()
    async with trio.open_nursery() as nursery:
        runtime = await start(nursery, common_env)
        bus = runtime.bus
        await publish(bus, created(chat, [u1, u2]))
        async with trio.open_nursery() as publishers:
            for seq in range(2, 251):
                publishers.start_soon(publish, bus, message(chat, seq, u1))
        await wait_for_sync(bus, u2, lambda c: entry(chat, 0, 250) in c)

        seqs = random.Random(7).sample(range(1, 251), 200)
        replies: dict[tuple[str, int], dict[str, Any]] = {}

        async def one(user: str, seq: int) -> None:
            replies[user, seq] = await ack(bus, user, chat, seq)

        async with trio.open_nursery() as clients:
            for i, seq in enumerate(seqs):
                clients.start_soon(one, u2 if i % 2 else u1, seq)
        assert len(replies) == 200
        assert all(reply["acked_seq"] >= seq for (_, seq), reply in replies.items())
        for user, parity in ((u1, 0), (u2, 1)):
            top = max(seq for i, seq in enumerate(seqs) if i % 2 == parity)
            cursor = {"user_id": user, "device_id": "d1", "chat_id": chat}
            reply = await rpc.call(bus, "im.dlv.cursor", cursor, timeout=5)
            assert reply == {"acked_seq": top, "last_seq": 250}
        runtime.stopping.set()


async def test_unreadable_events_are_skipped_and_replays_change_nothing(common_env):
    chat, u1, u2, _ = _ids()
    async with trio.open_nursery() as nursery:
        runtime = await start(nursery, common_env)
        bus = runtime.bus
        await js_publish(bus, stream_subject(chat), b"{not json", msg_id=f"{chat}:garbage")
        await publish(bus, created(chat, [u1, u2]))
        await publish(bus, message(chat, 2, u1))
        await publish(bus, removed(chat, 3, [u2]))
        await wait_for_sync(bus, u1, lambda c: entry(chat, 0, 3) in c)
        # An old event arriving again (a replayed batch) must not re-add the removed member.
        await publish(bus, created(chat, [u1, u2]), msg_id_override=f"{chat}:1:replay")
        await publish(bus, message(chat, 4, u1))
        await wait_for_sync(bus, u1, lambda c: entry(chat, 0, 4) in c)
        assert all(c["chat_id"] != chat for c in await sync(bus, u2))
        runtime.stopping.set()


async def test_sync_of_one_chat_and_malformed_requests(common_env):
    chat, u1, u2, u9 = _ids()
    async with trio.open_nursery() as nursery:
        runtime = await start(nursery, common_env)
        bus = runtime.bus
        await publish(bus, created(chat, [u1, u2]))
        await publish(bus, message(chat, 2, u1))
        await wait_for_sync(bus, u2, lambda c: entry(chat, 0, 2) in c)
        await ack(bus, u2, chat, 2)
        one = {"user_id": u2, "device_id": "d1", "chat_id": chat}
        assert await rpc.call(bus, "im.dlv.sync", one, timeout=5) == {"chats": [entry(chat, 2, 2)]}
        assert await rpc.call(bus, "im.dlv.sync", {**one, "after_seq": 1}, timeout=5) == {
            "chats": [entry(chat, 1, 2)]}
        for payload, code in (({**one, "user_id": u9}, 4003), ({**one, "chat_id": "nochat"}, 4001),
                              ({"device_id": "d1"}, 4000)):
            with pytest.raises(NatterjackError) as caught:
                await rpc.call(bus, "im.dlv.sync", payload, timeout=5)
            assert caught.value.code == code
        batch = {"acks": [{**one, "seq": 1}, {**one, "user_id": u9, "seq": 1}]}
        reply = await rpc.call(bus, "im.dlv.ack", batch, timeout=5)
        assert reply["applied"] == 0
        assert reply["results"][0]["acked_seq"] == 2
        assert reply["results"][1]["error"]["code"] == 4003
        runtime.stopping.set()
