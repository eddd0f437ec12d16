"""history against real NATS JetStream and MySQL: stream in, idempotent writes, pages out."""

from __future__ import annotations

import json
import secrets
from typing import Any

import orjson
import pytest
import trio

from libs import rpc
from libs.bus import Bus, js_publish, open_bus
from libs.errors import UNAVAILABLE, NatterjackError
from libs.events import msg_id, stream_subject
from libs.ids import new_id
from services.history import app
from services.history.config import load

UNUSUAL_CONTENT = {"zeta": {"b": [1, 2.5, -0.0, 1e-7, None], "a": {"ü": "ß", "": None}},
                   "alpha": "日本語 \u2028 😀 \"quoted\" \\ back", "num": 12345678901234567,
                   "mid": [{"y": True, "x": False}], "float": 3.141592653589793}
UNUSUAL_METADATA = {"trace": {"k2": 2, "k1": 1}, "tags": ["b", "a"], "empty": {}, "nothing": None}


@pytest.fixture
async def history(common_env):
    config = load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="20"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        yield runtime
        runtime.stopping.set()


def new_chat() -> str:
    return "hc" + secrets.token_hex(6)


def created(chat: str, *users: str) -> dict[str, Any]:
    return {"event": "chat_updated", "chat_id": chat, "seq": 1, "ts": 1000, "kind": "created",
            "actor_id": users[0], "details": {"type": "group", "name": "g", "members": [
                {"user_id": u, "role": "owner" if i == 0 else "member"} for i, u in enumerate(users)]}}


def message(chat: str, seq: int, content: Any = None, metadata: Any = None) -> dict[str, Any]:
    return {"event": "message", "chat_id": chat, "seq": seq, "ts": 1000 + seq, "message_id": new_id(),
            "sender_id": "u1", "sender_device_id": "d1", "client_msg_id": f"c-{seq}",
            "content_type": "text", "content_version": 1,
            "content": f"hello {seq}" if content is None else content, "metadata": metadata}


def membership(chat: str, seq: int, kind: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"event": "chat_updated", "chat_id": chat, "seq": seq, "ts": 1000 + seq, "kind": kind,
            "actor_id": "u1", "details": details}


async def publish(bus: Bus, event: dict[str, Any], dedup_id: str | None = None) -> None:
    chat, seq = event["chat_id"], event["seq"]
    await js_publish(bus, stream_subject(chat), orjson.dumps(event),
                     msg_id=dedup_id or msg_id(chat, seq))


async def page(bus: Bus, chat: str, user: str = "u1", **bounds: Any) -> dict[str, Any]:
    return await rpc.call(bus, "im.history.page", {"chat_id": chat, "user_id": user, **bounds},
                          timeout=5)


async def error_code(subject: str, bus: Bus, payload: dict[str, Any]) -> int:
    with pytest.raises(NatterjackError) as caught:
        await rpc.call(bus, subject, payload, timeout=5)
    return caught.value.code


async def wait_for_seq(bus: Bus, chat: str, seq: int, user: str = "u1") -> dict[str, Any]:
    """Poll until the newest stored event of the chat is ``seq``; returns that page."""
    with trio.fail_after(15):
        while True:
            try:
                answer = await page(bus, chat, user, limit=200)
                if answer["events"] and answer["events"][-1]["seq"] >= seq:
                    return answer
            except NatterjackError as exc:
                # 4001/4003: membership not written yet; 5003: MySQL just came back and the
                # breaker has not let a trial through yet (a client retries a 5003 too).
                if exc.code not in (4001, 4003, UNAVAILABLE):
                    raise
            await trio.sleep(0.05)


def seqs(answer: dict[str, Any]) -> list[int]:
    return [e["seq"] for e in answer["events"]]


async def test_events_are_stored_once_and_paged_by_the_contract(history) -> None:
    bus, chat = history.bus, new_chat()
    await publish(bus, created(chat, "u1", "u2"))
    for seq in range(2, 31):
        await publish(bus, message(chat, seq))
    first_copy = message(chat, 3)
    await publish(bus, first_copy, dedup_id=f"{chat}:3:again")  # the stream stores it twice
    answer = await wait_for_seq(bus, chat, 30)
    assert seqs(answer) == list(range(1, 31)) and answer["has_more"] is False
    rows = await history.db.fetchone(
        "SELECT COUNT(*) AS n FROM history_messages WHERE chat_id = %s", (chat,))
    assert rows["n"] == 30
    assert answer["events"][0]["type"] == "chat_updated" and answer["events"][1]["type"] == "message"
    assert "event" not in answer["events"][1]

    cases = [({"limit": 10}, list(range(21, 31)), True), ({}, list(range(1, 31)), False),
             ({"before_seq": 5}, [1, 2, 3, 4], False),
             ({"before_seq": 20, "limit": 5}, [15, 16, 17, 18, 19], True),
             ({"after_seq": 25, "limit": 3}, [26, 27, 28], True),
             ({"after_seq": 27}, [28, 29, 30], False), ({"after_seq": 30}, [], False),
             ({"after_seq": 10, "before_seq": 15}, [11, 12, 13, 14], False),
             ({"after_seq": 10, "before_seq": 15, "limit": 2}, [11, 12], True),
             ({"after_seq": 0, "limit": 1}, [1], True), ({"before_seq": 0}, [], False)]
    for bounds, expected, more in cases:
        got = await page(bus, chat, "u2", **bounds)
        assert (seqs(got), got["has_more"], got["chat_id"]) == (expected, more, chat), bounds


async def test_content_and_metadata_round_trip_byte_for_byte(history) -> None:
    bus, chat = history.bus, new_chat()
    await publish(bus, created(chat, "u1"))
    sent = message(chat, 2, UNUSUAL_CONTENT, UNUSUAL_METADATA)
    await publish(bus, sent)
    item = (await wait_for_seq(bus, chat, 2))["events"][1]
    expected = {"type": "message", **{k: v for k, v in sent.items() if k != "event"}, "state": "active"}
    assert json.dumps(item) == json.dumps(expected)  # equal, key order kept at every level

    raw = await bus.request("im.history.page", orjson.dumps({"chat_id": chat, "user_id": "u1"}),
                            timeout=5)
    assert orjson.dumps(UNUSUAL_CONTENT) in raw.data and orjson.dumps(UNUSUAL_METADATA) in raw.data

    by_seq = await rpc.call(bus, "im.history.get", {"chat_id": chat, "user_id": "u1", "seq": 2},
                            timeout=5)
    by_id = await rpc.call(bus, "im.history.get",
                           {"message_id": sent["message_id"], "user_id": "u1"}, timeout=5)
    assert json.dumps(by_seq) == json.dumps(by_id) == json.dumps(expected)
    assert await error_code("im.history.get", bus,
                            {"chat_id": chat, "user_id": "u1", "seq": 3}) == 4004


async def test_access_and_request_checks(history) -> None:
    bus, chat = history.bus, new_chat()
    await publish(bus, created(chat, "u1", "u2"))
    await publish(bus, message(chat, 2))
    await wait_for_seq(bus, chat, 2)
    base = {"chat_id": chat, "user_id": "u1"}
    assert await error_code("im.history.page", bus, {**base, "user_id": "u3"}) == 4003
    assert await error_code("im.history.get", bus, {**base, "user_id": "u3", "seq": 1}) == 4003
    assert await error_code("im.history.page", bus, {**base, "chat_id": new_chat()}) == 4001
    for bad in ({"limit": 201}, {"limit": 0}, {"before_seq": "5"}, {"after_seq": -1},
                {"before_seq": 2.5}):
        assert await error_code("im.history.page", bus, {**base, **bad}) == 4000, bad


async def test_membership_follows_chat_updated_events(history) -> None:
    bus, chat = history.bus, new_chat()
    await publish(bus, created(chat, "u1", "u2"))
    await publish(bus, membership(chat, 2, "member_added",
                                  {"members": [{"user_id": "u3", "role": "member"}]}))
    await publish(bus, membership(chat, 3, "member_removed", {"user_ids": ["u2"]}))
    await wait_for_seq(bus, chat, 3)
    assert seqs(await page(bus, chat, "u3")) == [1, 2, 3]
    assert await error_code("im.history.page", bus, {"chat_id": chat, "user_id": "u2"}) == 4003
    # A redelivered old event (here: seq 1 again, under another id) must not undo the removal.
    await publish(bus, created(chat, "u1", "u2"), dedup_id=f"{chat}:1:again")
    await publish(bus, message(chat, 4))
    await wait_for_seq(bus, chat, 4)
    assert await error_code("im.history.page", bus, {"chat_id": chat, "user_id": "u2"}) == 4003


async def test_poison_messages_do_not_block_the_consumer(history) -> None:
    bus, chat = history.bus, new_chat()
    await js_publish(bus, stream_subject(chat), b"{not json", msg_id=f"{chat}:poison:1")
    await js_publish(bus, stream_subject(chat), b'{"event":"message","chat_id":"' + chat.encode()
                     + b'"}', msg_id=f"{chat}:poison:2")
    await publish(bus, created(chat, "u1"))
    await publish(bus, message(chat, 2))
    assert seqs(await wait_for_seq(bus, chat, 2)) == [1, 2]


async def test_events_published_while_history_is_down_are_written_after_restart(
        common_env, nats_server) -> None:
    config = load(common_env("history"))
    chat = new_chat()
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        await publish(runtime.bus, created(chat, "u1"))
        await wait_for_seq(runtime.bus, chat, 1)
        runtime.stopping.set()
    async with open_bus(nats_server.url, name="t") as bus:
        for seq in range(2, 6):
            await publish(bus, message(chat, seq))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        assert seqs(await wait_for_seq(runtime.bus, chat, 5)) == [1, 2, 3, 4, 5]
        runtime.stopping.set()


async def test_failed_writes_are_retried_until_mysql_takes_them(common_env) -> None:
    config = load(common_env("history", NJ_HISTORY_RETRY_BASE_MS="20", NJ_HISTORY_RETRY_MAX_MS="200"))
    chat = new_chat()
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        db, bus = runtime.db, runtime.bus
        await publish(bus, created(chat, "u1"))
        await wait_for_seq(bus, chat, 1)
        await db.execute("RENAME TABLE history_messages TO history_messages_away")
        try:
            for seq in range(2, 5):
                await publish(bus, message(chat, seq))
            await trio.sleep(0.5)  # several failed attempts, nothing acked or dropped
        finally:
            await db.execute("RENAME TABLE history_messages_away TO history_messages")
        assert seqs(await wait_for_seq(bus, chat, 4)) == [1, 2, 3, 4]
        runtime.stopping.set()


async def test_a_reused_message_id_never_costs_an_event(history) -> None:
    bus, chat = history.bus, new_chat()
    await publish(bus, created(chat, "u1"))
    first = message(chat, 2)
    await publish(bus, first)
    await publish(bus, {**message(chat, 3), "message_id": first["message_id"]})
    answer = await wait_for_seq(bus, chat, 3)
    assert seqs(answer) == [1, 2, 3]  # seq stays dense; the body keeps the id as sent
    assert answer["events"][2]["message_id"] == first["message_id"]
    row = await history.db.fetchone("SELECT message_id FROM history_messages "
                                    "WHERE chat_id = %s AND seq = 3", (chat,))
    assert row["message_id"] is None
