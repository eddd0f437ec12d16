"""history's recent-event cache, message states, search and retention against real NATS,
MySQL and Redis."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from libs import metrics, rpc
from libs.bus import Bus
from libs.errors import NatterjackError
from libs.natsd import free_port
from services.history import app
from services.history.config import load
from tests.integration.test_history_writer import (
    created,
    message,
    new_chat,
    page,
    publish,
    seqs,
    wait_for_seq,
)


def lookups(result: str) -> float:
    return metrics.CACHE_LOOKUPS.labels(cache="history", result=result)._value.get()


@pytest.fixture
async def history(common_env):
    config = load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="10"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        yield runtime
        runtime.stopping.set()


def update(chat: str, seq: int, target: int, kind: str, content: Any = None) -> dict[str, Any]:
    event = {"event": "message_updated", "chat_id": chat, "seq": seq, "ts": 1000 + seq,
             "target_seq": target, "kind": kind, "actor_id": "u1"}
    if kind == "edit":
        event["content"] = content
    return event


async def stored_chat(bus: Bus, count: int, text: Any = None) -> str:
    chat = new_chat()
    await publish(bus, created(chat, "u1", "u2"))
    for seq in range(2, count + 1):
        await publish(bus, message(chat, seq, text(seq) if text else None))
    await wait_for_seq(bus, chat, count)
    return chat


async def test_pages_in_the_cached_window_are_served_from_redis(history) -> None:
    bus = history.bus
    chat = await stored_chat(bus, 60)
    hits, misses = lookups("hit"), lookups("miss")
    for bounds, expected, more in [({"limit": 10}, list(range(51, 61)), True),
                                   ({"before_seq": 20, "limit": 5}, list(range(15, 20)), True),
                                   ({"after_seq": 55}, list(range(56, 61)), False),
                                   ({"after_seq": 60}, [], False), ({}, list(range(11, 61)), True),
                                   ({"after_seq": 0, "limit": 200}, list(range(1, 61)), False)]:
        got = await page(bus, chat, "u2", **bounds)
        assert (seqs(got), got["has_more"]) == (expected, more), bounds
    assert lookups("hit") - hits == 6 and lookups("miss") == misses
    assert (await page(bus, chat, "u2", limit=3))["events"][-1]["state"] == "active"


async def test_a_cold_cache_is_refilled_by_the_newest_page(history) -> None:
    bus = history.bus
    chat = await stored_chat(bus, 30)
    await history.cache.run(lambda c: c.delete(history.cache.keys.recent(chat),
                                               history.cache.keys.recent_meta(chat)))
    misses = lookups("miss")
    assert seqs(await page(bus, chat, limit=20)) == list(range(11, 31))
    assert lookups("miss") - misses == 1
    hits = lookups("hit")
    assert seqs(await page(bus, chat, limit=20)) == list(range(11, 31))
    assert seqs(await page(bus, chat, before_seq=15, limit=3)) == [12, 13, 14]
    assert lookups("hit") - hits == 2
    with pytest.raises(NatterjackError) as caught:  # a non-member is turned away, cached or not
        await page(bus, chat, "u9")
    assert caught.value.code == 4003


async def test_edits_recalls_and_deletes_show_in_pages_and_never_go_stale(history) -> None:
    bus = history.bus
    chat = await stored_chat(bus, 5)
    await page(bus, chat)  # cached now
    await publish(bus, update(chat, 6, 2, "edit", {"b": 1, "a": [2.5, "ü"]}))
    await publish(bus, update(chat, 7, 3, "recall"))
    await publish(bus, update(chat, 8, 4, "delete"))
    await publish(bus, update(chat, 9, 2, "edit", "second"))
    answer = await wait_for_seq(bus, chat, 9)
    items = {e["seq"]: e for e in answer["events"]}
    assert (items[2]["state"], items[2]["content"], items[2]["edited_seq"], items[2]["updated_seq"]) \
        == ("edited", "second", 9, 9)
    assert (items[3]["state"], items[3]["content"], items[3]["updated_seq"]) == ("recalled", None, 7)
    assert (items[4]["state"], items[4]["content"]) == ("deleted", None)
    assert items[5]["state"] == "active" and items[6]["type"] == "message_updated"
    # An older edit redelivered under another id never overrides the newer one.
    await publish(bus, update(chat, 6, 2, "edit", {"b": 1}), dedup_id=f"{chat}:6:again")
    await publish(bus, message(chat, 10))
    await wait_for_seq(bus, chat, 10)
    hits = lookups("hit")
    cached = await page(bus, chat)
    assert lookups("hit") - hits == 1 and cached["events"][1]["content"] == "second"
    row = await history.db.fetchone("SELECT state, updated_seq FROM history_messages "
                                    "WHERE chat_id = %s AND seq = 2", (chat,))
    assert row == {"state": "edited", "updated_seq": 9}
    got = await rpc.call(bus, "im.history.get", {"chat_id": chat, "user_id": "u1", "seq": 3}, timeout=5)
    assert got["state"] == "recalled" and got["content"] is None


async def search(bus: Bus, chat: str, q: str, **extra: Any) -> dict[str, Any]:
    return await rpc.call(bus, "im.history.search", {"chat_id": chat, "user_id": "u1", "q": q,
                                                     **extra}, timeout=5)


async def test_search_finds_text_newest_first_and_skips_recalled(history) -> None:
    bus = history.bus
    words = {2: "the quick brown fox", 3: "Lazy dogs sleep", 4: "quick thinking, fox-like",
             5: "a b c", 6: "100% sure_thing", 7: "你好世界"}
    chat = await stored_chat(bus, 7, lambda seq: words[seq])
    assert seqs(await search(bus, chat, "QUICK fox")) == [4, 2]
    assert seqs(await search(bus, chat, "quick", limit=1)) == [4]
    assert (await search(bus, chat, "quick", limit=1))["has_more"] is True
    assert seqs(await search(bus, chat, "quick", before_seq=4)) == [2]
    assert seqs(await search(bus, chat, "laz")) == [3]  # prefix
    assert seqs(await search(bus, chat, "b")) == [5, 2]  # short word: LIKE
    assert seqs(await search(bus, chat, "100%")) == [6]
    assert seqs(await search(bus, chat, "你好")) == [7]
    assert seqs(await search(bus, chat, '+"fox" -(quick)')) == [4, 2]  # operators are not syntax
    await publish(bus, update(chat, 8, 4, "recall"))
    await publish(bus, update(chat, 9, 3, "edit", "energetic dogs"))
    await wait_for_seq(bus, chat, 9)
    assert seqs(await search(bus, chat, "quick")) == [2]
    assert seqs(await search(bus, chat, "energetic")) == [3]
    assert seqs(await search(bus, chat, "lazy")) == []
    for bad in ({"q": ""}, {"q": "!!!"}, {"limit": 101}, {"before_seq": "x"}):
        with pytest.raises(NatterjackError) as caught:
            await rpc.call(bus, "im.history.search", {"chat_id": chat, "user_id": "u1", "q": "x", **bad},
                           timeout=5)
        assert caught.value.code == 4000
    with pytest.raises(NatterjackError) as caught:
        await rpc.call(bus, "im.history.search", {"chat_id": chat, "user_id": "u9", "q": "quick"},
                       timeout=5)
    assert caught.value.code == 4003


async def test_retention_deletes_old_events_but_keeps_the_newest(common_env) -> None:
    config = load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="10", NJ_HISTORY_RETENTION_DAYS="1",
                             NJ_HISTORY_RETENTION_INTERVAL_S="1", NJ_HISTORY_RETENTION_BATCH="3"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        bus = runtime.bus
        old, recent = new_chat(), new_chat()
        await publish(bus, created(old, "u1"))
        for seq in range(2, 11):  # ts 1002..1010: decades old
            await publish(bus, message(old, seq))
        await publish(bus, created(recent, "u1"))
        fresh = message(recent, 2)
        fresh["ts"] = 2**41  # far in the future
        await publish(bus, fresh)
        await wait_for_seq(bus, old, 10)
        await wait_for_seq(bus, recent, 2)
        with trio.fail_after(20):
            while seqs(await page(bus, old, after_seq=0)) != [10]:  # noqa: ASYNC110 - polling
                await trio.sleep(0.1)
        below = await page(bus, old, before_seq=10)
        assert (below["events"], below["has_more"], below["retained_from_seq"]) == ([], False, 10)
        assert (await page(bus, old))["retained_from_seq"] == 10
        assert seqs(await page(bus, recent)) == [2]  # its creation is old too; never the newest
        runtime.stopping.set()


async def test_without_redis_pages_come_from_mysql(common_env) -> None:
    config = load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="10",
                             NJ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        chat = await stored_chat(runtime.bus, 12)
        await publish(runtime.bus, update(chat, 13, 2, "edit", "new"))
        answer = await wait_for_seq(runtime.bus, chat, 13)
        assert seqs(answer) == list(range(1, 14)) and answer["events"][1]["content"] == "new"
        assert seqs(await page(runtime.bus, chat, before_seq=5)) == [1, 2, 3, 4]
        runtime.stopping.set()
