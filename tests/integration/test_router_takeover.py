"""A stale send claim is settled, never renumbered blindly (real NATS, MySQL, own redis-server).

The crash it covers: a router stores a send (PubAck) and dies before recording its ack, so
the claim stays pending with the seq it was given. A resend after the pending lifetime must
answer the original ack when that event is stored, and store the send anew only when its
number holds a void. Each test builds the dead router's leftovers with plain SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from libs import ids, rpc
from libs.config import MySQLConfig
from libs.errors import UNAVAILABLE, NatterjackError
from libs.lifecycle import Runtime
from tests.faultkit import RedisServer
from tests.integration.test_router_dedup import (  # noqa: F401 (fixtures)
    _chat,
    _eventually,
    _router,
    _send,
    _stored_messages,
    own_redis,
    router,
)
from tests.integration.test_router_seq import stored_events
from tests.sql import query

pytestmark = pytest.mark.timeout(90)
ROW = "SELECT message_id, seq, acked FROM router_send_claims WHERE client_msg_id = %s"
DIED = ("UPDATE router_send_claims SET acked = 0, created_ts = %s, ts = %s"
        " WHERE sender_id = 'alice' AND client_msg_id = %s")
LEFT_BEHIND = ("INSERT INTO router_send_claims (sender_id, client_msg_id, chat_id, message_id, seq, ts,"
               " created_ts) VALUES ('alice', %s, %s, %s, %s, %s, %s)")


@pytest.fixture
async def small_blocks(common_env, own_redis: RedisServer) -> AsyncIterator[Runtime]:  # noqa: F811
    """A router reserving 4 numbers at a time, so a lost counter leaves a few voids."""
    async for runtime in _router(common_env, own_redis.url, NJ_ROUTER_SEQ_BLOCK="4"):
        yield runtime


async def _forget_cached(runtime: Runtime, client_msg_id: str) -> None:
    assert runtime.cache is not None
    key = runtime.cache.keys.dedup("alice", client_msg_id)
    await runtime.cache.run(lambda r: r.delete(key))


async def test_a_stored_send_whose_router_died_before_its_ack_answers_the_original(
        router: Runtime, mysql_config: MySQLConfig) -> None:  # noqa: F811
    bus = router.bus
    chat_id = await _chat(bus)
    first = await _send(bus, chat_id, "kept-1")
    await _eventually(lambda: query(mysql_config, ROW, "kept-1") == [(first["message_id"], first["seq"], 1)], 5)
    long_ago = ids.now_ms() - 60_000  # the pending lifetime (30 s) is over
    query(mysql_config, DIED, long_ago, first["ts"], "kept-1")
    await _forget_cached(router, "kept-1")
    assert await _send(bus, chat_id, "kept-1", retries=1) == first
    assert len(await _stored_messages(bus, chat_id, "kept-1")) == 1
    await _eventually(lambda: query(mysql_config, ROW, "kept-1") == [(first["message_id"], first["seq"], 1)], 5)
    unused = first["seq"] + 1  # the resend's own number
    assert await _event_at(bus, chat_id, unused) == "void"
    assert sorted(e["seq"] for e in await stored_events(bus, chat_id)) == list(range(1, unused + 1))


async def test_a_send_whose_number_was_voided_is_stored_once_under_a_new_number(
        small_blocks: Runtime, own_redis: RedisServer, mysql_config: MySQLConfig) -> None:  # noqa: F811
    """The dead router took seq 3 and never stored it; history had it voided meanwhile."""
    bus = small_blocks.bus
    chat_id = await _chat(bus)
    await _send(bus, chat_id, "before")  # seq 2
    await trio.sleep(0.3)  # confirmed_seq flushed
    own_redis.flushall()  # the counter is lost: 3..4 are voided, sends resume at 5
    await _send(bus, chat_id, "after")
    assert await _event_at(bus, chat_id, 3) == "void"
    lost = ids.new_id()
    long_ago = ids.now_ms() - 60_000
    query(mysql_config, LEFT_BEHIND, "lost-1", chat_id, lost, 3, long_ago, long_ago)
    ack = await _send(bus, chat_id, "lost-1", retries=1)
    assert ack["message_id"] != lost and ack["seq"] > 4
    assert [m["seq"] for m in await _stored_messages(bus, chat_id, "lost-1")] == [ack["seq"]]
    await _eventually(lambda: query(mysql_config, ROW, "lost-1") == [(ack["message_id"], ack["seq"], 1)], 5)


async def test_past_the_duplicate_window_history_settles_the_claim(
        router: Runtime, mysql_config: MySQLConfig) -> None:  # noqa: F811
    """Too old to republish safely: history says what the number holds; until it can, 5003
    (and the next resend may settle it at once)."""
    bus = router.bus
    chat_id = await _chat(bus)
    first = await _send(bus, chat_id, "late-1")
    long_ago = ids.now_ms() - 3_600_000  # the stream's duplicate window (10 min) is over
    query(mysql_config, DIED, long_ago, long_ago, "late-1")
    await _forget_cached(router, "late-1")
    with pytest.raises(NatterjackError) as unsettled:  # no history answers yet
        await _send(bus, chat_id, "late-1", retries=1)
    assert unsettled.value.code == UNAVAILABLE
    stored = {"event": "message", "chat_id": chat_id, "seq": first["seq"], "message_id": first["message_id"]}

    async def history_get(payload: dict[str, Any]) -> dict[str, Any]:
        assert (payload["chat_id"], payload["seq"], payload["user_id"]) == (chat_id, first["seq"], "alice")
        return stored
    async with trio.open_nursery() as nursery:
        await nursery.start(rpc.serve_rpc, bus, "im.history.get", "history", history_get)
        again = await _send(bus, chat_id, "late-1", retries=1)  # the lease was given back
        assert (again["message_id"], again["seq"]) == (first["message_id"], first["seq"])
        nursery.cancel_scope.cancel()
    await _eventually(lambda: query(mysql_config, ROW, "late-1") == [(first["message_id"], first["seq"], 1)], 5)


async def _event_at(bus: Any, chat_id: str, seq: int) -> str:
    """The kind of event stored at ``seq``, once one is."""
    with trio.fail_after(15):
        while True:
            kinds = {e["seq"]: e["event"] for e in await stored_events(bus, chat_id)}
            if seq in kinds:
                return kinds[seq]
            await trio.sleep(0.2)
