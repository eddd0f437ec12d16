"""router against real NATS, MySQL and Redis: membership changes, custom content types,
edits/recalls/deletes, receipts, typing and presence fan-out.

Two stand-ins answer on the bus: im.auth.users.exist (from a set of known user ids) and
im.history.get (from the events this test saw fanned out to its fake gateway).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis
import trio

from libs import events, presence, rpc
from libs.bus import Bus, open_bus
from libs.cache import Keys
from libs.errors import NatterjackError, NotFound
from libs.lifecycle import Runtime
from services.router import app
from services.router.config import load


@dataclass
class Env:
    bus: Bus
    router: Runtime
    gateway: str
    keys: Keys
    redis: redis.Redis
    users: set[str] = field(default_factory=set)
    delivered: list[dict[str, Any]] = field(default_factory=list)

    def user(self) -> str:
        user_id = "u" + secrets.token_hex(5)
        self.users.add(user_id)
        return user_id

    def online(self, user_id: str, device: str = "d1") -> None:
        self.redis.hset(self.keys.presence(user_id), device,
                        presence.encode(self.gateway, "c1", int(time.time() * 1000)))

    async def call(self, verb: str, payload: dict[str, Any]) -> Any:
        return await rpc.call(self.bus, f"im.router.{verb}", payload, timeout=10)

    async def code(self, verb: str, payload: dict[str, Any]) -> int:
        with pytest.raises(NatterjackError) as caught:
            await self.call(verb, payload)
        return caught.value.code

    async def deliveries(self, match: Any, count: int = 1) -> list[dict[str, Any]]:
        with trio.fail_after(5):
            while True:
                found = [d for d in self.delivered if match(d)]
                if len(found) >= count:
                    return found
                await trio.sleep(0.02)
        raise AssertionError("unreachable")


@pytest.fixture
async def env(common_env, nats_server, redis_url, redis_prefix):
    config = load(common_env("router", NJ_ROUTER_RECALL_WINDOW_S="1",
                             NJ_ROUTER_TYPING_MIN_INTERVAL_MS="60000"))
    client = redis.Redis.from_url(redis_url)
    async with trio.open_nursery() as nursery:
        router = await nursery.start(app.main, config)
        async with open_bus(nats_server.url, name="router-test") as bus:
            state = Env(bus, router, "gwt" + secrets.token_hex(4), Keys(redis_prefix), client)

            async def exists(payload: dict[str, Any]) -> dict[str, Any]:
                ids = payload["user_ids"]
                return {"missing": [u for u in ids if u not in state.users],
                        "existing": [u for u in ids if u in state.users]}

            async def collect(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                sub = await bus.subscribe(f"im.gw.{state.gateway}.deliver")
                task_status.started()
                async for msg in sub:
                    state.delivered.append(orjson.loads(msg.data))

            async def history_get(payload: dict[str, Any]) -> dict[str, Any]:
                for delivery in state.delivered:
                    event = delivery.get("event") or {}
                    if (event.get("chat_id"), event.get("seq")) == (payload["chat_id"], payload["seq"]):
                        return events.to_page_item(event)
                raise NotFound("no event at this seq")

            await nursery.start(rpc.serve_rpc, bus, "im.auth.users.exist", "auth", exists)
            await nursery.start(rpc.serve_rpc, bus, "im.history.get", "history", history_get)
            await nursery.start(collect)
            yield state
            nursery.cancel_scope.cancel()
        router.stopping.set()
    client.close()


async def group(env: Env, *members: str) -> dict[str, Any]:
    return await env.call("chat.create", {"creator_id": members[0], "type": "group",
                                          "members": list(members[1:]), "name": "g"})


def roles(chat: dict[str, Any]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in chat["members"]}


def chat_event(chat_id: str, kind: str):
    return lambda d: (d.get("event", {}).get("chat_id") == chat_id and d["event"].get("kind") == kind)


async def test_membership_changes_are_stored_events_with_their_own_seq(env: Env) -> None:
    owner, admin, member, newcomer, outsider = (env.user() for _ in range(5))
    for user in (owner, admin, member, newcomer):
        env.online(user)
    chat = await group(env, owner, admin, member)
    cid = chat["chat_id"]
    assert await env.code("members.add", {"actor_id": member, "chat_id": cid, "user_id": newcomer}) == 4003
    assert await env.code("members.add", {"actor_id": owner, "chat_id": cid, "user_id": "nobody1"}) == 4004
    changed = await env.call("members.add", {"actor_id": owner, "chat_id": cid, "user_id": admin,
                                             "role": "admin"})
    assert roles(changed)[admin] == "admin" and changed["last_seq"] == 2
    added = await env.call("members.add", {"actor_id": admin, "chat_id": cid, "user_id": newcomer})
    assert roles(added)[newcomer] == "member" and added["last_seq"] == 3
    event = (await env.deliveries(chat_event(cid, "member_added")))[0]
    assert event["event"]["details"] == {"members": [{"user_id": newcomer, "role": "member"}]}
    assert {t["user_id"] for t in event["targets"]} == {owner, admin, member, newcomer}

    assert await env.code("members.remove", {"actor_id": admin, "chat_id": cid, "user_id": owner}) == 4003
    assert await env.code("members.remove", {"actor_id": owner, "chat_id": cid, "user_id": owner}) == 4003
    assert await env.code("members.remove", {"actor_id": owner, "chat_id": cid, "user_id": outsider}) == 4004
    assert await env.call("members.remove", {"actor_id": admin, "chat_id": cid, "user_id": member}) == {}
    removed = (await env.deliveries(chat_event(cid, "member_removed")))[0]
    assert removed["event"]["details"]["user_ids"] == [member] and removed["event"]["seq"] == 4
    assert member in {t["user_id"] for t in removed["targets"]}
    send = {"sender_id": member, "sender_device_id": "d1", "client_msg_id": "x1", "chat_id": cid,
            "content": "hi"}
    assert await env.code("send", send) == 4003
    assert await env.code("read", {"chat_id": cid, "user_id": member, "seq": 1}) == 4003
    ack = await env.call("send", {**send, "sender_id": owner})
    assert ack["seq"] == 5
    message = (await env.deliveries(lambda d: d.get("event", {}).get("seq") == 5
                                    and d["event"].get("chat_id") == cid))[0]
    assert member not in {t["user_id"] for t in message["targets"]}

    moved = await env.call("owner.transfer", {"actor_id": owner, "chat_id": cid, "user_id": newcomer})
    assert roles(moved) == {owner: "admin", admin: "admin", newcomer: "owner"}
    renamed = await env.call("chat.update", {"actor_id": admin, "chat_id": cid, "name": "renamed"})
    assert renamed["name"] == "renamed" and renamed["last_seq"] == 7
    assert await env.call("members.remove", {"actor_id": owner, "chat_id": cid, "user_id": owner}) == {}

    direct = await env.call("chat.create", {"creator_id": owner, "type": "direct", "members": [admin]})
    assert await env.code("members.add", {"actor_id": owner, "chat_id": direct["chat_id"],
                                          "user_id": newcomer}) == 4003


async def test_custom_types_register_version_and_validate(env: Env) -> None:
    alice, bob = env.user(), env.user()
    name = "poll" + secrets.token_hex(3)
    v1 = {"type": "object", "required": ["q"], "properties": {"q": {"type": "string"}}}
    v2 = {**v1, "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}}
    first = await env.call("types.register", {"registrant_id": alice, "name": name, "schema": v1})
    assert (first["version"], first["created"], first["registrant_id"]) == (1, True, alice)
    again = await env.call("types.register", {"registrant_id": alice, "name": name, "schema": v1})
    assert (again["version"], again["created"]) == (1, False)
    assert await env.code("types.register", {"registrant_id": bob, "name": name, "schema": v2}) == 4003
    assert await env.code("types.register", {"registrant_id": alice, "name": "text", "schema": v1}) == 4003
    assert await env.code("types.register", {"registrant_id": alice, "name": name, "version": 3,
                                             "schema": v2}) == 4000
    bad = await env.code("types.register", {"registrant_id": alice, "name": name + "x",
                                            "schema": {"type": "nonsense"}})
    assert bad == 4000
    second = await env.call("types.register", {"registrant_id": alice, "name": name, "schema": v2})
    assert (second["version"], second["created"]) == (2, True)
    listed = await env.call("types.list", {})
    assert {"text", name} <= {t["name"] for t in listed["types"]}
    assert [t["version"] for t in listed["types"] if t["name"] == name] == [1, 2]

    chat = await group(env, alice, bob)
    base = {"sender_id": alice, "sender_device_id": "d1", "chat_id": chat["chat_id"], "content_type": name}
    assert (await env.call("send", {**base, "client_msg_id": "a", "content": {"q": "x", "n": 1}}))["seq"] == 2
    await env.call("send", {**base, "client_msg_id": "b", "content_version": 1, "content": {"q": "y"}})
    with pytest.raises(NatterjackError) as failed:
        await env.call("send", {**base, "client_msg_id": "c", "content": {"q": 5}})
    assert failed.value.code == 4022 and failed.value.details["path"] == "$.content.q"
    assert await env.code("send", {**base, "client_msg_id": "d", "content_version": 9,
                                   "content": {"q": "y"}}) == 4002
    assert await env.code("send", {**base, "client_msg_id": "e", "content_type": "nope" + name,
                                   "content": {}}) == 4002


async def test_edit_recall_delete_follow_their_rules(env: Env) -> None:
    owner, alice = env.user(), env.user()
    env.online(owner)
    env.online(alice)
    chat = await group(env, owner, alice)
    cid = chat["chat_id"]
    send = {"sender_id": alice, "sender_device_id": "d1", "chat_id": cid}
    first = await env.call("send", {**send, "client_msg_id": "m1", "content": "hello"})
    second = await env.call("send", {**send, "client_msg_id": "m2", "content": "again"})
    update = {"actor_id": alice, "actor_device_id": "d1", "chat_id": cid}
    edited = await env.call("message.update", {**update, "target_seq": first["seq"], "kind": "edit",
                                               "content": "hello!"})
    assert edited["seq"] == 4
    event = (await env.deliveries(lambda d: d.get("event", {}).get("event") == "message_updated"
                                  and d["event"]["chat_id"] == cid))[0]["event"]
    assert (event["target_seq"], event["kind"], event["content"], event["actor_id"]) == (2, "edit", "hello!", alice)
    assert await env.code("message.update", {**update, "target_seq": 2, "kind": "edit", "content": 5}) == 4022
    assert await env.code("message.update", {**update, "actor_id": owner, "target_seq": 2,
                                             "kind": "edit", "content": "x"}) == 4003
    assert await env.code("message.update", {**update, "target_seq": 4, "kind": "delete"}) == 4000
    assert await env.code("message.update", {**update, "target_seq": 99, "kind": "delete"}) == 4004
    await trio.sleep(1.1)  # past the 1 s recall window of this test
    assert await env.code("message.update", {**update, "target_seq": second["seq"], "kind": "recall"}) == 4003
    deleted = await env.call("message.update", {**update, "actor_id": owner, "target_seq": second["seq"],
                                                "kind": "delete"})
    assert deleted["seq"] == 5


async def test_receipts_typing_and_presence_reach_the_other_members(env: Env) -> None:
    alice, bob, carol = env.user(), env.user(), env.user()
    env.online(bob)
    chat = await group(env, alice, bob)
    cid = chat["chat_id"]
    assert await env.call("read", {"chat_id": cid, "user_id": alice, "seq": 1}) == {}
    receipt = (await env.deliveries(lambda d: d.get("frame", {}).get("type") == "receipt"
                                    and d["frame"]["chat_id"] == cid))[0]
    assert receipt["frame"] == {"type": "receipt", "chat_id": cid, "seq": 1, "user_id": alice, "status": "read"}
    assert receipt["targets"] == [{"user_id": bob, "device_id": "d1"}]
    await env.call("read", {"chat_id": cid, "user_id": alice, "seq": 1})  # not a move: no receipt

    typing = {"user_id": alice, "device_id": "d1", "chat_id": cid, "typing": True}
    for _ in range(3):
        assert await env.call("typing", typing) == {}
    await env.call("typing", {**typing, "typing": False})
    assert await env.code("typing", {**typing, "user_id": carol}) == 4003
    frames = await env.deliveries(lambda d: d.get("frame", {}).get("type") == "typing_indicator"
                                  and d["frame"]["chat_id"] == cid, 2)
    await trio.sleep(0.2)
    frames = [d["frame"]["typing"] for d in env.delivered
              if d.get("frame", {}).get("type") == "typing_indicator" and d["frame"]["chat_id"] == cid]
    assert frames == [True, False]
    listed = await env.call("chat.list", {"user_id": bob})
    assert [c["unread"] for c in listed["chats"] if c["chat_id"] == cid] == [1]

    await env.bus.publish(f"im.evt.presence.{alice}", orjson.dumps(
        {"user_id": alice, "device_id": "d9", "device_online": True, "status": "online",
         "last_seen_ts": 123, "ts": 123}))
    update = (await env.deliveries(lambda d: d.get("frame", {}).get("type") == "presence_update"
                                   and d["frame"]["user_id"] == alice))[0]
    assert update["frame"] == {"type": "presence_update", "user_id": alice, "status": "online",
                               "last_seen_ts": 123}
    assert update["targets"] == [{"user_id": bob, "device_id": "d1"}]
