"""Seed 000 properties 8, 9 and 10 against history (real NATS JetStream, MySQL, Redis).

history runs once per module in a thread of its own (``trio.run``); hypothesis tests call
into it with ``trio.from_thread.run``. Events are published straight to the stream the way
the router does (``js_publish`` with ``Nats-Msg-Id`` = ``<chat_id>:<seq>``). MySQL page
reads are counted by wrapping ``HistoryStorage.read_page`` for the whole module.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs import metrics, rpc
from libs.bus import js_publish
from libs.errors import NatterjackError
from libs.events import msg_id, stream_subject
from libs.ids import new_id
from services.history import app
from services.history.config import load
from services.history.storage import HistoryStorage
from tools.service_thread import ServiceThread

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
MYSQL_PAGE_READS = [0]


class HistoryThread(ServiceThread):
    """history in a background thread with its own trio loop."""

    def __init__(self, config: Any):
        super().__init__(app.main, config, name="history-under-test")

    def publish(self, event: dict[str, Any]) -> None:
        async def go() -> None:
            await js_publish(self.runtime.bus, stream_subject(event["chat_id"]), orjson.dumps(event),
                             msg_id=msg_id(event["chat_id"], event["seq"]))
        self.run(go)

    def page(self, chat_id: str, **bounds: Any) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            return await rpc.call(self.runtime.bus, "im.history.page",
                                  {"chat_id": chat_id, "user_id": "u1", **bounds}, timeout=10)
        return self.run(go)

    def wait_for(self, chat_id: str, seq: int, seen: Callable[[dict[str, Any]], None] = lambda _: None
                 ) -> dict[str, Any]:
        """Poll the newest page until ``seq`` is stored; ``seen`` checks every page read."""
        async def go() -> dict[str, Any]:
            with trio.fail_after(15):
                while True:
                    try:
                        answer = await rpc.call(self.runtime.bus, "im.history.page",
                                                {"chat_id": chat_id, "user_id": "u1", "limit": 20},
                                                timeout=10)
                    except NatterjackError as exc:
                        if exc.code != 4001:  # the chat's creation is not stored yet
                            raise
                        answer = {"events": []}
                    seen(answer)
                    if answer["events"] and answer["events"][-1]["seq"] >= seq:
                        return answer
                    await trio.sleep(0.005)
        return self.run(go)


@pytest.fixture(scope="module")
def history(common_env) -> Iterator[HistoryThread]:
    original = HistoryStorage.read_page

    async def counted(self: HistoryStorage, *args: Any) -> Any:
        MYSQL_PAGE_READS[0] += 1
        return await original(self, *args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HistoryStorage, "read_page", counted)
        service = HistoryThread(load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="5")))
        service.start()
        yield service
        service.stop()


class Chat:
    """A chat of this module, created on first use; seqs are handed out in order."""

    def __init__(self, history: HistoryThread):
        self.history = history
        self.chat_id = "hp" + secrets.token_hex(6)
        self.seq = 1
        history.publish({"event": "chat_updated", "chat_id": self.chat_id, "seq": 1, "ts": 1,
                         "kind": "created", "actor_id": "u1", "details": {
                             "type": "group", "name": None, "members": [{"user_id": "u1", "role": "owner"}]}})

    def next(self) -> int:
        self.seq += 1
        return self.seq


def message(chat: Chat, content: Any, metadata: Any = None) -> dict[str, Any]:
    seq = chat.next()
    return {"event": "message", "chat_id": chat.chat_id, "seq": seq, "ts": 1_700_000_000_000 + seq,
            "message_id": new_id(), "sender_id": "u1", "sender_device_id": "d1",
            "client_msg_id": f"c{seq}", "content_type": "card", "content_version": 1,
            "content": content, "metadata": metadata}


@pytest.fixture(scope="module")
def chat(history: HistoryThread) -> Chat:
    return Chat(history)


def lookups(result: str) -> float:
    return metrics.CACHE_LOOKUPS.labels(cache="history", result=result)._value.get()


text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63) + 1, 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=16)
json_objects = st.dictionaries(text, json_values, max_size=5)


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(content=json_values, metadata=st.none() | json_objects)
def test_property_8_message_persistence_round_trip(history: HistoryThread, chat: Chat, content: Any,
                                                   metadata: dict[str, Any] | None) -> None:
    """Feature: im-backend-service, Property 8: Message Persistence Round Trip

    *For any* message, storing it to the database then retrieving it should return an
    equivalent message with all data preserved: a message event published to the stream
    comes back from im.history.page JSON-equal, object key order kept at every level.
    Requirement R5.1: every message persisted to MySQL.
    """
    event = message(chat, content, metadata)
    history.publish(event)
    history.wait_for(chat.chat_id, event["seq"])
    item = history.page(chat.chat_id, after_seq=event["seq"] - 1, limit=1)["events"][0]
    expected = {"type": "message", **{k: v for k, v in event.items() if k != "event"}, "state": "active"}
    assert json.dumps(item) == json.dumps(expected)


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(kind=st.sampled_from(["edit", "recall", "delete"]), before=json_values, after=json_values)
def test_property_9_cache_behavior_and_consistency(history: HistoryThread, kind: str, before: Any,
                                                   after: Any) -> None:
    """Feature: im-backend-service, Property 9: Cache Behavior and Consistency

    *For any* frequently accessed message, the cache should store it for faster retrieval,
    and cache invalidation should maintain consistency when data changes: once a message is
    cached, every page read that includes its edit/recall/delete event shows the new state,
    and the next cached read shows it too — never the stale content.
    Requirements R5.2, R5.4: cached in Redis, invalidated on change.
    """
    chat = Chat(history)
    target = message(chat, before)
    history.publish(target)
    history.wait_for(chat.chat_id, target["seq"])
    hits = lookups("hit")
    cached = history.page(chat.chat_id)["events"][-1]
    assert lookups("hit") == hits + 1 and cached["state"] == "active"  # served from the cache
    update_seq = chat.next()
    change = {"event": "message_updated", "chat_id": chat.chat_id, "seq": update_seq,
              "ts": 1_700_000_000_000 + update_seq, "target_seq": target["seq"], "kind": kind,
              "actor_id": "u1"}
    if kind == "edit":
        change["content"] = after
    history.publish(change)
    state = {"edit": "edited", "recall": "recalled", "delete": "deleted"}[kind]
    expected = after if kind == "edit" else None

    def never_stale(answer: dict[str, Any]) -> None:
        items = {e["seq"]: e for e in answer["events"]}
        if update_seq in items:
            assert items[target["seq"]]["state"] == state
            assert json.dumps(items[target["seq"]]["content"]) == json.dumps(expected)
    history.wait_for(chat.chat_id, update_seq, never_stale)
    hits = lookups("hit")
    item = history.page(chat.chat_id)["events"][1]
    assert lookups("hit") == hits + 1
    assert (item["state"], item["updated_seq"]) == (state, update_seq)
    assert json.dumps(item["content"]) == json.dumps(expected)


@pytest.fixture(scope="module")
def cached_chat(history: HistoryThread) -> Chat:
    """A chat of 150 events: all inside the cache's window (NJ_HISTORY_CACHE_EVENTS=200)."""
    chat = Chat(history)
    for _ in range(149):
        history.publish(message(chat, {"n": chat.seq + 1}))
    history.wait_for(chat.chat_id, chat.seq)
    return chat


def expected_seqs(last: int, before: int | None, after: int | None, limit: int) -> tuple[list[int], bool]:
    """The contract's paging rules over seqs 1..last."""
    inside = [s for s in range(1, last + 1)
              if (after is None or s > after) and (before is None or s < before)]
    if after is None:
        return inside[-limit:], len(inside) > limit
    return inside[:limit], len(inside) > limit


bounds = st.none() | st.integers(0, 210)


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(before=bounds, after=bounds, limit=st.integers(1, 200))
def test_property_10_cache_first_retrieval(history: HistoryThread, cached_chat: Chat,
                                           before: int | None, after: int | None, limit: int) -> None:
    """Feature: im-backend-service, Property 10: Cache-First Retrieval

    *For any* message history request, the system should check cache first before
    querying the database: a page request within the cached window is answered from Redis
    without a MySQL read (counted on the storage's read method and by the metrics).
    Requirement R5.3: cache first, then the database.
    """
    mysql_reads, hits = MYSQL_PAGE_READS[0], lookups("hit")
    request = {k: v for k, v in (("before_seq", before), ("after_seq", after)) if v is not None}
    answer = history.page(cached_chat.chat_id, limit=limit, **request)
    assert MYSQL_PAGE_READS[0] == mysql_reads and lookups("hit") == hits + 1
    got = ([e["seq"] for e in answer["events"]], answer["has_more"])
    assert got == expected_seqs(cached_chat.seq, before, after, limit)
