"""A number taken by a router that died before storing anything becomes a void (the whole
product as processes; the knobs are small: publish deadline and void grace 1 s, history's
hole_after 3 s, gateways' gap wait at its 30 s default).

A router's death between numbering and publishing is simulated by taking the number the
way the router does (INCR of the chat's counter in Redis) and storing nothing for it. The
nats-server admits only the services' users (proto/subjects.yaml permissions), so history
asking the router is checked as deployed; the test's own probe connects as admin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import redis
import trio
from trio_websocket import open_websocket_url

from libs import events, ids, rpc
from libs.bus import Bus, js_publish, open_bus
from libs.cache import Keys
from libs.errors import CONFLICT, UNKNOWN_CHAT, NatterjackError
from libs.natsd import ADMIN, NatsServer
from libs.streams import STREAM
from tools.stack import running_nats

from .client import User, direct_pair, next_frame, send

pytestmark = pytest.mark.e2e
HOLE_AFTER_S = 3.0
GAP_WAIT_S = 30.0  # the gateways' default


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"NJ_ROUTER_PUBLISH_DEADLINE_S": "1", "NJ_ROUTER_VOID_GRACE_S": "1",
            "NJ_HISTORY_HOLE_AFTER_S": str(HOLE_AFTER_S), "NJ_HISTORY_HOLE_CHECK_S": "0.2"}


@pytest.fixture(scope="module")
def stack_nats() -> Iterator[NatsServer]:
    with running_nats("nj-stack-nats-", users=True) as server:
        yield server


@asynccontextmanager
async def probe(nats: NatsServer) -> AsyncIterator[Bus]:
    async with open_bus(nats.url, name="probe", user=ADMIN, password=nats.users[ADMIN]) as bus:
        yield bus


def take_number(stack: Any, chat_id: str) -> int:
    """What a router does first for a send; then it "dies"."""
    client = redis.Redis.from_url(stack.env["NJ_REDIS_URL"])
    try:
        return int(client.incr(Keys(stack.env["NJ_REDIS_PREFIX"]).seq(chat_id)))
    finally:
        client.close()


async def page(http: httpx.AsyncClient, user: User, chat_id: str,
               *, unknown_ok: bool = False) -> dict[int, dict[str, Any]]:
    answer = await http.get(f"/api/v1/chats/{chat_id}/messages", headers=user.auth,
                            params={"after_seq": 0, "limit": 100})
    if unknown_ok and answer.status_code == 404 and answer.json()["error"]["code"] == UNKNOWN_CHAT:
        return {}
    assert answer.status_code == 200, answer.text
    return {item["seq"]: item for item in answer.json()["events"]}


async def wait_page(http: httpx.AsyncClient, user: User, chat_id: str, seq: int,
                    timeout: float = 20) -> dict[int, dict[str, Any]]:
    """Poll until history serves ``seq``; a lagging history may not know the chat yet."""
    with trio.fail_after(timeout):
        while True:
            items = await page(http, user, chat_id, unknown_ok=True)
            if seq in items:
                return items
            await trio.sleep(0.1)


async def events_in_stream(bus: Any, chat_id: str) -> int:
    """How many messages the stream holds for the chat (one per seq when dense)."""
    info = await bus.request(f"$JS.API.STREAM.INFO.{STREAM}",
                             orjson.dumps({"subjects_filter": events.stream_subject(chat_id)}), timeout=5)
    return int(orjson.loads(info.data)["state"].get("subjects", {}).get(events.stream_subject(chat_id), 0))


def late_message(chat_id: str, seq: int, sender: User) -> dict[str, Any]:
    """The event the dead router would have stored."""
    return {"event": "message", "chat_id": chat_id, "seq": seq, "ts": ids.now_ms(),
            "message_id": ids.new_id(), "sender_id": sender.user_id, "sender_device_id": "d1",
            "client_msg_id": f"late-{seq}", "content_type": "text", "content_version": 1,
            "content": "late", "metadata": None}


async def test_a_number_a_router_died_with_becomes_a_void_that_reaches_the_recipient(stack, stack_nats) -> None:
    async with httpx.AsyncClient(base_url=stack.api) as http:
        alice, bob, chat = await direct_pair(http, "hole")
        async with open_websocket_url(f"{alice.ws_url}?token={alice.access_token}") as wa, \
                open_websocket_url(f"{bob.ws_url}?token={bob.access_token}") as wb:
            await next_frame(wb, "sync_done")
            lost = await trio.to_thread.run_sync(take_number, stack, chat)
            started = trio.current_time()
            await send(wa, {"type": "send_message", "id": "after-hole", "chat_id": chat, "content": "next"})
            assert (await next_frame(wa, "message_ack"))["seq"] == lost + 1
            # The gateway holds the next message until the hole is filled, then sends both.
            void = await next_frame(wb, "void", "new_message", timeout=GAP_WAIT_S)
            waited = trio.current_time() - started
            after = await next_frame(wb, "new_message")
        assert (void["type"], void["seq"], void.get("reason")) == ("void", lost, "abandoned")
        assert after["seq"] == lost + 1
        assert HOLE_AFTER_S <= waited < GAP_WAIT_S / 2, waited
        items = await page(http, bob, chat)
        assert sorted(items) == list(range(1, lost + 2))
        assert items[lost]["type"] == "void" and items[lost + 1]["type"] == "message"
        async with probe(stack_nats) as bus:
            assert await events_in_stream(bus, chat) == lost + 1


async def test_a_late_real_event_keeps_its_seq_and_one_event_per_seq(stack, stack_nats) -> None:
    """Within the stream's duplicate window one event per (chat, seq) lands, whichever came
    first: an event stored before the void keeps the seq (the void is dropped), and an
    event arriving after the void is dropped."""
    async with httpx.AsyncClient(base_url=stack.api) as http, \
            probe(stack_nats) as bus:
        alice, bob, chat = await direct_pair(http, "late")
        # 1: the event lands, then the router is asked to void it anyway.
        landed = await trio.to_thread.run_sync(take_number, stack, chat)
        event = late_message(chat, landed, alice)
        await js_publish(bus, events.stream_subject(chat), orjson.dumps(event),
                         msg_id=events.msg_id(chat, landed))
        assert await rpc.call(bus, "im.router.holes", {"chat_id": chat, "seqs": [landed]}, timeout=5) \
            == {"voided": 1}
        # 2: a number whose router died; the hole filler voids it; the event comes late.
        lost = await trio.to_thread.run_sync(take_number, stack, chat)
        async with open_websocket_url(f"{alice.ws_url}?token={alice.access_token}") as wa:
            await send(wa, {"type": "send_message", "id": "after", "chat_id": chat, "content": "next"})
            assert (await next_frame(wa, "message_ack"))["seq"] == lost + 1
        await wait_page(http, bob, chat, lost)
        late = await js_publish(bus, events.stream_subject(chat), orjson.dumps(late_message(chat, lost, alice)),
                                msg_id=events.msg_id(chat, lost))
        assert late.duplicate
        await trio.sleep(1)  # time for the router's void of `landed` to be (not) stored
        items = await page(http, bob, chat)
        assert sorted(items) == list(range(1, lost + 2))
        assert items[landed]["type"] == "message" and items[landed]["message_id"] == event["message_id"]
        assert items[lost]["type"] == "void"
        assert await events_in_stream(bus, chat) == lost + 1


async def test_numbers_never_handed_out_are_refused(stack, stack_nats) -> None:
    async with httpx.AsyncClient(base_url=stack.api) as http, \
            probe(stack_nats) as bus:
        _, _, chat = await direct_pair(http, "future")  # seq 1 (created) is all it handed out
        with pytest.raises(NatterjackError) as caught:
            await rpc.call(bus, "im.router.holes", {"chat_id": chat, "seqs": [1, 2]}, timeout=5)
        assert caught.value.code == CONFLICT and caught.value.details["last_seq"] == 1
        with pytest.raises(NatterjackError) as unknown:
            await rpc.call(bus, "im.router.holes", {"chat_id": "no-such-chat", "seqs": [1]}, timeout=5)
        assert unknown.value.code == CONFLICT
