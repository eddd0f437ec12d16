"""Durable send de-duplication (real NATS, MySQL, and a redis-server of the test's own, never
the machine's; MySQL behind a ``tests.faultkit.Proxy`` where it goes away).

Contract: resending a client id within the dedup window answers the original message_ack
(same message_id and seq) and stores nothing new, also while Redis is down or after it lost
its keys; a send in progress answers 5003. Without MySQL, sends are still acked.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
import trio

from libs import ids, rpc
from libs.bus import Bus
from libs.config import MySQLConfig
from libs.db import Database
from libs.errors import FORBIDDEN, SCHEMA_FAILED, UNAVAILABLE, UNKNOWN_CHAT, NatterjackError
from libs.lifecycle import Runtime
from libs.migrate import migrate
from services.router import app
from services.router.claims import Ask, DurableClaims
from services.router.config import load
from tests.faultkit import Proxy, RedisServer
from tests.integration.test_router_seq import stored_events
from tests.sql import query

pytestmark = pytest.mark.timeout(90)
USERS = {"alice", "bob"}


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def proxy(mysql_config: MySQLConfig) -> Iterator[Proxy]:
    with Proxy(mysql_config.port, mysql_config.host) as running:
        yield running


async def _exists(payload: dict[str, Any]) -> dict[str, Any]:
    return {"missing": [u for u in payload["user_ids"] if u not in USERS],
            "existing": [u for u in payload["user_ids"] if u in USERS]}


async def _router(common_env, redis_url: str, **extra: str) -> AsyncIterator[Runtime]:
    config = load(common_env("router", NJ_REDIS_URL=redis_url, NJ_ROUTER_VOID_GRACE_S="0.5",
                             NJ_MYSQL_RETRY_BASE_MS="20", NJ_MYSQL_BREAKER_MAX_MS="200", **extra))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        await nursery.start(rpc.serve_rpc, runtime.bus, "im.auth.users.exist", "auth", _exists)
        yield runtime
        runtime.stopping.set()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def router(common_env, own_redis: RedisServer) -> AsyncIterator[Runtime]:
    async for runtime in _router(common_env, own_redis.url, NJ_ROUTER_DEDUP_CLEANUP_INTERVAL_S="0.2"):
        yield runtime


@pytest.fixture
async def router_via_proxy(common_env, own_redis: RedisServer, proxy: Proxy) -> AsyncIterator[Runtime]:
    async for runtime in _router(common_env, own_redis.url, NJ_MYSQL_PORT=str(proxy.port),
                                 NJ_MYSQL_READ_TIMEOUT_MS="1000"):
        yield runtime


async def _chat(bus: Bus) -> str:
    chat = await rpc.call(bus, "im.router.chat.create",
                          {"creator_id": "alice", "type": "group", "members": ["bob"]}, timeout=10)
    return str(chat["chat_id"])


async def _send(bus: Bus, chat_id: str, client_msg_id: str, *, retries: int = 40) -> dict[str, Any]:
    """Send; a 5003 (in progress, or a dependency away) is retried with the same id."""
    for attempt in range(1, retries + 1):
        try:
            return dict(await rpc.call(bus, "im.router.send", {
                "sender_id": "alice", "sender_device_id": "d1", "client_msg_id": client_msg_id,
                "chat_id": chat_id, "content": "hello"}, timeout=15))
        except NatterjackError as exc:
            if exc.code != UNAVAILABLE or attempt == retries:
                raise
            await trio.sleep(0.25)
    raise AssertionError("never acked")


async def _stored_messages(bus: Bus, chat_id: str, client_msg_id: str) -> list[dict[str, Any]]:
    await trio.sleep(0.3)  # the stream has every acked event; let stragglers land too
    return [e for e in await stored_events(bus, chat_id)
            if e["event"] == "message" and e.get("client_msg_id") == client_msg_id]


async def _eventually(check: Callable[[], bool], timeout: float) -> None:
    with trio.fail_after(timeout):
        while True:
            if check():
                return
            await trio.sleep(0.1)




async def test_a_resend_while_redis_is_down_is_stored_once(router: Runtime, own_redis: RedisServer) -> None:
    """Requirement R6.2: without Redis a resent client id is still answered with the
    original ack (MySQL's claims), sequentially and concurrently, and stored once."""
    bus = router.bus
    chat_id = await _chat(bus)
    own_redis.stop()
    first = await _send(bus, chat_id, "down-1")
    again = await _send(bus, chat_id, "down-1")
    assert again == first
    answers: list[dict[str, Any]] = []

    async def one() -> None:
        answers.append(await _send(bus, chat_id, "down-2"))
    async with trio.open_nursery() as nursery:
        for _ in range(4):  # concurrent sends of one id: one is stored, all get its ack
            nursery.start_soon(one)
    assert len({(a["message_id"], a["seq"]) for a in answers}) == 1
    assert len(await _stored_messages(bus, chat_id, "down-1")) == 1
    assert len(await _stored_messages(bus, chat_id, "down-2")) == 1


async def test_a_resend_after_flushall_answers_the_original_ack(router: Runtime,
                                                                own_redis: RedisServer) -> None:
    """Requirement R6.2: a Redis that lost its keys does not lose the dedup window."""
    bus = router.bus
    chat_id = await _chat(bus)
    first = await _send(bus, chat_id, "flush-1")
    own_redis.flushall()
    assert await _send(bus, chat_id, "flush-1") == first
    assert len(await _stored_messages(bus, chat_id, "flush-1")) == 1


async def test_sends_are_acked_and_deduplicated_by_redis_while_mysql_is_away(
        router_via_proxy: Runtime, proxy: Proxy) -> None:
    bus = router_via_proxy.bus
    chat_id = await _chat(bus)
    await _send(bus, chat_id, "warm")  # members cached in Redis: sends need no MySQL now
    await trio.to_thread.run_sync(proxy.down)
    first = await _send(bus, chat_id, "away-1", retries=1)
    assert await _send(bus, chat_id, "away-1") == first  # 5003 until its ack is cached
    await trio.to_thread.run_sync(proxy.up)
    assert len(await _stored_messages(bus, chat_id, "away-1")) == 1


async def test_a_stale_pending_claim_is_taken_over_and_a_young_one_answers_5003(
        router: Runtime, mysql_config: MySQLConfig) -> None:
    bus = router.bus
    chat_id = await _chat(bus)
    stale, young = ids.new_id(), ids.new_id()
    now = ids.now_ms()
    insert = ("INSERT INTO router_send_claims (sender_id, client_msg_id, chat_id, message_id, created_ts)"
              " VALUES ('alice', %s, %s, %s, %s)")
    query(mysql_config, insert, "stale-1", chat_id, stale, now - 600_000)  # its router died
    query(mysql_config, insert, "young-1", chat_id, young, now)  # a send in progress elsewhere
    ack = await _send(bus, chat_id, "stale-1", retries=1)
    assert ack["message_id"] != stale
    with pytest.raises(NatterjackError) as refused:
        await _send(bus, chat_id, "young-1", retries=1)
    assert refused.value.code == UNAVAILABLE
    row = "SELECT message_id, seq, acked FROM router_send_claims WHERE client_msg_id = 'stale-1'"
    # The write-behind ack lands in the taken-over row.
    await _eventually(lambda: query(mysql_config, row) == [(ack["message_id"], ack["seq"], 1)], 5)


async def test_claims_past_the_dedup_window_are_purged(router: Runtime, mysql_config: MySQLConfig) -> None:
    old = ids.now_ms() - 2 * 86_400_000
    query(mysql_config, "INSERT INTO router_send_claims (sender_id, client_msg_id, chat_id, message_id,"
          " acked, created_ts) VALUES ('bob', 'old-1', 'c', %s, 1, %s)", ids.new_id(), old)
    await _eventually(lambda: not query(mysql_config, "SELECT 1 FROM router_send_claims"
                                        " WHERE client_msg_id = 'old-1'"), 10)


async def test_concurrent_claims_are_group_committed(mysql_config: MySQLConfig) -> None:
    await trio.to_thread.run_sync(migrate, mysql_config, "router", app.MIGRATIONS)
    db = Database(dataclasses.replace(mysql_config, pool_size=2))
    claims = DurableClaims(db, pending_s=30, wait_s=10, max_batch=500)
    sender, verdicts = secrets.token_hex(6), []

    async def one(client_msg_id: str) -> None:
        verdicts.append((client_msg_id, await claims.claim(Ask(sender, client_msg_id, "c", ids.new_id()))))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(claims.run)
            with trio.fail_after(20):
                async with trio.open_nursery() as sends:
                    for n in range(100):
                        sends.start_soon(one, f"m{n % 50}")  # each id twice, concurrently
            await claims.drain()
            nursery.cancel_scope.cancel()
    finally:
        db.close()
    assert claims.claims.batches < 50
    by_id: dict[str, list[str]] = {}
    for client_msg_id, (verdict, _) in verdicts:
        by_id.setdefault(client_msg_id, []).append(verdict)
    assert all(sorted(v) == ["in_progress", "ours"] for v in by_id.values()), by_id


async def _send_as(bus: Bus, chat_id: str, sender: str, client_msg_id: str, content: Any) -> dict[str, Any]:
    return dict(await rpc.call(bus, "im.router.send", {
        "sender_id": sender, "sender_device_id": "d1", "client_msg_id": client_msg_id,
        "chat_id": chat_id, "content": content}, timeout=15))


async def test_a_refused_send_leaves_its_id_free(router: Runtime) -> None:
    """The member check, schema check and Redis claim share one round trip: a send refused
    after it claimed its id frees the id, so a corrected resend goes on (no 5003)."""
    chat_id, client_msg_id = await _chat(router.bus), secrets.token_hex(8)
    with pytest.raises(NatterjackError) as refused:
        await _send_as(router.bus, chat_id, "alice", client_msg_id, {"not": "text"})
    assert refused.value.code == SCHEMA_FAILED
    with pytest.raises(NatterjackError) as outsider:
        await _send_as(router.bus, chat_id, "mallory", client_msg_id, "hello")
    assert outsider.value.code == FORBIDDEN
    with pytest.raises(NatterjackError) as unknown:
        await _send_as(router.bus, ids.new_id(), "alice", client_msg_id, "hello")
    assert unknown.value.code == UNKNOWN_CHAT
    ack = await _send_as(router.bus, chat_id, "alice", client_msg_id, "hello")
    assert await _send_as(router.bus, chat_id, "alice", client_msg_id, "hello") == ack


async def test_the_ack_is_cached_in_redis_with_the_fanout_lookup(router: Runtime) -> None:
    """The ack's Redis record rides the fan-out's presence pipeline: it is there shortly
    after the answer, and a resend is answered from it."""
    cache = router.cache
    assert cache is not None
    chat_id, client_msg_id = await _chat(router.bus), secrets.token_hex(8)
    ack = await _send(router.bus, chat_id, client_msg_id)
    key = cache.keys.dedup("alice", client_msg_id)
    with trio.fail_after(5):
        while True:
            cached = await cache.run(lambda r: r.get(key))
            if cached not in (None, b"pending"):
                break
            await trio.sleep(0.05)
    assert orjson.loads(cached) == ack
    assert await _send(router.bus, chat_id, client_msg_id) == ack
