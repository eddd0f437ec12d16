"""Seed 000 properties 5, 6 and 7 against the router (real NATS JetStream, MySQL, Redis).

The router runs once per module in a thread of its own (``trio.run``); hypothesis tests
call into it with ``trio.from_thread.run``. im.auth.users.exist is answered by a stand-in
on the bus that knows the users this module made up. Fan-out is observed through a fake
gateway: members are marked online in the presence registry under its id, and the test
subscribes to its delivery subject.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs import presence, rpc
from libs.cache import Keys
from libs.errors import NatterjackError
from libs.events import stream_subject
from libs.lifecycle import Runtime
from libs.streams import STREAM
from services.router import app
from services.router.config import load
from tools.service_thread import ServiceThread


class RouterThread(ServiceThread):
    """The router and its stand-ins in a background thread with its own trio loop."""

    def __init__(self, config: Any, keys: Keys, redis_url: str):
        super().__init__(app.main, config, also=self._stand_ins, name="router-under-test")
        self.keys = keys
        self.redis = redis.Redis.from_url(redis_url)
        self.gateway = "gwp" + secrets.token_hex(4)
        self.users: set[str] = set()
        self.delivered: list[dict[str, Any]] = []

    async def _stand_ins(self, runtime: Runtime, nursery: trio.Nursery) -> None:
        await nursery.start(rpc.serve_rpc, runtime.bus, "im.auth.users.exist", "auth", self._exists)
        await nursery.start(self._collect)

    async def _exists(self, payload: dict[str, Any]) -> dict[str, Any]:
        ids = payload["user_ids"]
        return {"missing": [u for u in ids if u not in self.users],
                "existing": [u for u in ids if u in self.users]}

    async def _collect(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        sub = await self.runtime.bus.subscribe(f"im.gw.{self.gateway}.deliver")
        task_status.started()
        async for msg in sub:
            self.delivered.append(orjson.loads(msg.data))

    def stop(self, timeout: float = 30) -> None:
        super().stop(timeout)
        self.redis.close()

    # ---- helpers used by the tests ---------------------------------------------------------
    def new_users(self, count: int, online: bool = True) -> list[str]:
        users = ["p" + secrets.token_hex(6) for _ in range(count)]
        self.users.update(users)
        now = int(time.time() * 1000)
        for user in users if online else []:
            self.redis.hset(self.keys.presence(user), "d1", presence.encode(self.gateway, "c1", now))
        return users

    def call(self, verb: str, payload: dict[str, Any]) -> Any:
        async def go() -> Any:
            return await rpc.call(self.runtime.bus, f"im.router.{verb}", payload, timeout=10)
        return self.run(go)

    def error_of(self, verb: str, payload: dict[str, Any]) -> NatterjackError:
        with pytest.raises(NatterjackError) as caught:
            self.call(verb, payload)
        return caught.value

    def stored_last(self, chat_id: str) -> bytes:
        """The raw JSON of the chat's newest event in the JetStream stream."""
        async def go() -> bytes:
            bus = self.runtime.bus
            raw = await bus.call_aio(bus.nc.jsm().get_msg, STREAM, None, stream_subject(chat_id))
            return bytes(raw.data)
        return self.run(go)

    def wait_delivery(self, chat_id: str, seq: int) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            with trio.fail_after(5):
                while True:
                    for delivery in self.delivered:
                        event = delivery.get("event", {})
                        if event.get("chat_id") == chat_id and event.get("seq") == seq:
                            return delivery
                    await trio.sleep(0.005)
        return self.run(go)


@pytest.fixture(scope="module")
def router(common_env, redis_url, redis_prefix) -> Iterator[RouterThread]:
    service = RouterThread(load(common_env("router")), Keys(redis_prefix), redis_url)
    service.start()
    yield service
    service.stop()


def send(router: RouterThread, chat_id: str, sender: str, **fields: Any) -> dict[str, Any]:
    return router.call("send", {"sender_id": sender, "sender_device_id": "d1",
                                "client_msg_id": secrets.token_hex(8), "chat_id": chat_id, **fields})


HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(size=st.integers(2, 6), sender_index=st.integers(0, 5), direct=st.booleans(), data=st.data())
def test_property_5_direct_and_group_messaging(router: RouterThread, size: int, sender_index: int,
                                               direct: bool, data: st.DataObject) -> None:
    """Feature: im-backend-service, Property 5: Direct and Group Messaging

    *For any* valid user pair or group, the system should support message exchange between
    participants: the send succeeds, every other member is a fan-out target, and a
    non-member is refused (4003).
    Requirements R2.4, R2.5: one-to-one and group messaging.
    """
    size = 2 if direct else size
    members = router.new_users(size)
    outsider = router.new_users(1)[0]
    chat = router.call("chat.create", {"creator_id": members[0], "type": "direct" if direct else "group",
                                       "members": members[1:]})
    sender = members[sender_index % size]
    text = data.draw(st.text(min_size=1, max_size=50))
    ack = send(router, chat["chat_id"], sender, content=text)
    assert ack["seq"] == 2 and ack["chat_id"] == chat["chat_id"]
    delivery = router.wait_delivery(chat["chat_id"], ack["seq"])
    targets = {t["user_id"] for t in delivery["targets"]}
    assert set(members) - {sender} <= targets and outsider not in targets
    assert delivery["event"]["content"] == text and delivery["event"]["sender_id"] == sender
    refused = router.error_of("send", {"sender_id": outsider, "sender_device_id": "d1",
                                       "client_msg_id": "x", "chat_id": chat["chat_id"], "content": "no"})
    assert refused.code == 4003


json_scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(st.characters(blacklist_categories=["Cs"]), max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=8), inner, max_size=4), max_leaves=12)
json_objects = st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"]), max_size=8),
                               json_values, max_size=5)


@pytest.fixture(scope="module")
def open_type(router: RouterThread) -> tuple[str, str, str]:
    """A custom type whose schema allows any properties, and a chat to send it in."""
    owner, other = router.new_users(2, online=False)
    name = "card" + secrets.token_hex(4)
    router.call("types.register", {"registrant_id": owner, "name": name,
                                   "schema": {"type": "object", "additionalProperties": True}})
    chat = router.call("chat.create", {"creator_id": owner, "type": "group", "members": [other]})
    return name, chat["chat_id"], owner


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(content=json_objects, metadata=st.none() | json_objects)
def test_property_6_custom_message_round_trip(router: RouterThread, open_type: tuple[str, str, str],
                                              content: dict[str, Any], metadata: dict[str, Any] | None) -> None:
    """Feature: im-backend-service, Property 6: Custom Message Round Trip

    *For any* valid custom message with structured data and metadata, storing then
    retrieving the message should preserve all custom fields and data without modification
    (JSON-equal, object key order kept).
    Requirements R3.1, R3.3, R3.5: custom types stored and delivered unmodified.
    """
    name, chat_id, sender = open_type
    ack = send(router, chat_id, sender, content_type=name, content=content, metadata=metadata)
    stored = orjson.loads(router.stored_last(chat_id))
    assert stored["seq"] == ack["seq"] and stored["content_type"] == name
    assert orjson.dumps(stored["content"]) == orjson.dumps(content)
    assert orjson.dumps(stored["metadata"]) == orjson.dumps(metadata)


V1 = {"type": "object", "required": ["title"], "additionalProperties": False,
      "properties": {"title": {"type": "string"}}}
V2 = {"type": "object", "required": ["title"], "additionalProperties": False,
      "properties": {"title": {"type": "string"}, "score": {"type": "integer"}}}


@pytest.fixture(scope="module")
def versioned_type(router: RouterThread) -> tuple[str, str, str]:
    owner, other = router.new_users(2, online=False)
    name = "rating" + secrets.token_hex(4)
    router.call("types.register", {"registrant_id": owner, "name": name, "version": 1, "schema": V1})
    assert router.call("types.register", {"registrant_id": owner, "name": name, "version": 2,
                                          "schema": V2})["version"] == 2
    chat = router.call("chat.create", {"creator_id": owner, "type": "group", "members": [other]})
    return name, chat["chat_id"], owner


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(title=st.text(max_size=30), score=st.none() | st.integers(-1000, 1000),
       bad=st.sampled_from(["title", "score", "extra"]))
def test_property_7_message_schema_extensibility(router: RouterThread, versioned_type: tuple[str, str, str],
                                                 title: str, score: int | None, bad: str) -> None:
    """Feature: im-backend-service, Property 7: Message Schema Extensibility

    *For any* defined message schema for different content types, the system should accept
    and process messages conforming to that schema: version 2 adds an optional field, content
    valid under v2 is accepted as version 2, v1 content is still accepted with
    content_version 1, and content that fails the schema is refused with 4022 and a path.
    Requirements R3.2, R3.4: validated against extensible schemas.
    """
    name, chat_id, sender = versioned_type
    v2_content = {"title": title} if score is None else {"title": title, "score": score}
    first = send(router, chat_id, sender, content_type=name, content=v2_content)
    assert orjson.loads(router.stored_last(chat_id))["content_version"] == 2
    second = send(router, chat_id, sender, content_type=name, content_version=1, content={"title": title})
    assert second["seq"] == first["seq"] + 1
    assert orjson.loads(router.stored_last(chat_id))["content_version"] == 1
    invalid = {"title": {"title": 1}, "score": {"title": title, "score": "high"},
               "extra": {"title": title, "unknown": True}}[bad]
    refused = router.error_of("send", {"sender_id": sender, "sender_device_id": "d1", "client_msg_id": "z",
                                       "chat_id": chat_id, "content_type": name, "content": invalid})
    assert refused.code == 4022 and refused.details["path"].startswith("$.content")  # type: ignore[index]
